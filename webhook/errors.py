"""Errors of the webhook's adapters; the pure core's own errors live in `dracore.errors`.

- GatewayError: the API server refused (or did not answer) a request we needed, such as creating
  a template or a shared claim.
"""

from __future__ import annotations

from dracore.errors import WebhookError


class GatewayError(WebhookError):
    """The API server refused a request; the message carries its reason."""
