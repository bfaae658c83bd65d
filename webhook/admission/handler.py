"""POST /mutate without a web framework: body bytes in, status and body bytes out.

The server's event loop calls `Reviewer.answer` through `Endpoints`, and so do the in-process
tests (tests.builders.webhook_client). Each review is logged once (uid, namespace, pod,
operation, decision as JSON fields) and counted in the metrics by operation and outcome, with
its latency. A user's mistake is a 400 with a one-line reason; a bug on our side is an errored
AdmissionReview (code 500 inside an HTTP 200) and a traceback in the log, never in the answer.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from dracore import admission_review as review
from dracore import jsonio
from dracore.errors import BadReviewError
from webhook.admission.decision import Admission, NeedsCluster
from webhook.serving import metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes
    content_type: str = "application/json"


def is_json(content_type: str) -> bool:
    """application/json or application/<something>+json, parameters ignored (as Flask does)."""
    mimetype = content_type.partition(";")[0].strip().lower()
    return mimetype == "application/json" or (
        mimetype.startswith("application/") and mimetype.endswith("+json")
    )


def error_reply(status: int, reason: str) -> Reply:
    return Reply(status, jsonio.dumps({"error": reason}))


def too_large_reply(limit: int) -> Reply:
    """413: a review over the body limit, as both servers word it."""
    return error_reply(413, f"review too large: the limit is {limit} bytes")


class Reviewer:
    def __init__(self, admission: Admission) -> None:
        self.admission = admission

    def answer(self, body: bytes, content_type: str, *, cluster: bool = True) -> Reply:
        """The reply to one POST /mutate.

        With `cluster=False` a review that needs an API call raises NeedsCluster before
        anything is logged or counted; the caller then answers it again on a thread.
        """
        started = time.perf_counter()
        if not is_json(content_type):
            return self._invalid("expected Content-Type: application/json", 400, started)
        try:
            parsed = review.parse_request(review.decode_body(body))
        except BadReviewError as exc:
            return self._invalid(str(exc), exc.status, started)
        metadata = parsed.object.get("metadata") or {}
        fields: dict[str, Any] = {
            "uid": parsed.uid,
            "namespace": parsed.namespace,
            "pod": metadata.get("name") or metadata.get("generateName", ""),
            "operation": parsed.operation,
        }
        try:
            outcome = self.admission.review(parsed, cluster=cluster)
        except NeedsCluster:
            raise
        except Exception:
            elapsed = time.perf_counter() - started
            metrics.observe_review(parsed.operation, "error", elapsed, 0)
            log.exception("review %s failed", parsed.uid, extra={**fields, "decision": "error"})
            return Reply(200, jsonio.dumps(review.build_errored(parsed.uid)))
        elapsed = time.perf_counter() - started
        metrics.observe_review(
            parsed.operation, outcome.decision, elapsed, outcome.templates_created
        )
        log.info(
            "review uid=%s namespace=%s pod=%s decision=%s",
            parsed.uid,
            fields["namespace"],
            fields["pod"],
            outcome.decision,
            extra={**fields, "decision": outcome.decision, "durationMs": round(elapsed * 1000, 3)},
        )
        return Reply(200, jsonio.dumps(outcome.response))

    @staticmethod
    def _invalid(reason: str, status: int, started: float) -> Reply:
        metrics.observe_review("", "invalid", time.perf_counter() - started, 0)
        log.warning("review rejected: %s", reason, extra={"decision": "invalid"})
        return error_reply(status, reason)
