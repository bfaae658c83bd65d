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


def shown(value: object, limit: int = 60) -> str:
    """Someone else's value as it appears in a message: JSON for scalars, cut to `limit`.

    Never raises: integers too long to print, odd types and huge strings all get a short form.
    """
    if isinstance(value, bool) or value is None or isinstance(value, float):
        text = (
            "null"
            if value is None
            else str(value).lower()
            if isinstance(value, bool)
            else repr(value)
        )
    elif isinstance(value, int):
        text = (
            str(value) if value.bit_length() <= 256 else f"an integer of {value.bit_length()} bits"
        )
    elif isinstance(value, str):
        text = (
            '"'
            + value[: limit + 2].encode("unicode_escape").decode("ascii").replace('"', '\\"')
            + '"'
        )
    elif isinstance(value, dict):
        text = "an object"
    elif isinstance(value, list):
        text = "a list"
    else:
        text = f"a {type(value).__name__}"
    return text if len(text) <= limit else text[: limit - 1] + "…"
