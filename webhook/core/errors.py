"""Exceptions of the pure core, ranked by who must act on them.

- BadReviewError: the AdmissionReview itself is broken (HTTP 400/413); the API server applies
  the webhook's failurePolicy.
- TranslationError: the pod cannot be admitted under the policy (allowed: false, code 403);
  the message tells the pod's author what to change.
- PolicyError: the GPUPolicy document is invalid; the message names each field path.
"""

from __future__ import annotations


class WebhookError(Exception):
    """Base class for errors this package raises on purpose."""


class BadReviewError(WebhookError):
    def __init__(self, reason: str, *, status: int = 400) -> None:
        super().__init__(reason)
        self.status = status


class TranslationError(WebhookError):
    """A pod the policy refuses; the message is shown to the user by kubectl."""


class PolicyError(WebhookError):
    """An invalid GPUPolicy; `problems` lists one `field.path: message` per finding."""

    def __init__(self, problems: list[str], *, source: str = "policy") -> None:
        self.problems = problems
        self.source = source
        super().__init__(f"{source} is invalid:\n  " + "\n  ".join(problems))
