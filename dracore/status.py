"""Reading the API server's `Status` answer, shared by the webhook's gateway and the plugin."""

from __future__ import annotations

import json


def status_message(body: str | None, reason: str | None) -> str:
    """The message of the Status the API server answered with, else the HTTP reason."""
    try:
        message = json.loads(body or "{}").get("message")
    except (ValueError, AttributeError):
        message = None
    return str(message or reason)


def status_line(body: str | None, reason: str | None, code: object) -> str:
    """The Status message with the HTTP code, as errors about an API answer show it."""
    return f"{status_message(body, reason)} (HTTP {code})"
