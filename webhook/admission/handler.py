"""POST /mutate without a web framework: body bytes in, status and body bytes out.

`Reviewer.answer` decides a review with whatever API calls it needs, within the review's
`Deadline` (a thread of the server, or the caller's thread in tests). `Reviewer.answer_inline` is the event
loop's: it answers what it can without blocking, and hands the rest back as a `Deferred` saying
why (a large body, more work than the loop's budget, or what the decision needs from the API);
the server runs that on a thread. Each review is logged once (uid, namespace, pod,
operation, decision as JSON fields) and counted in the metrics by operation and outcome, with
its latency. A user's mistake is a 400 with a one-line reason; a bug on our side is an errored
AdmissionReview (code 500 inside an HTTP 200) and a traceback in the log, never in the answer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from dracore import admission_review as review
from dracore import jsonio
from dracore.admission_review import AdmissionRequest
from dracore.errors import BadReviewError
from webhook import metrics
from webhook.admission import policy_check
from webhook.admission.budget import INLINE_REVIEW_BYTES, INLINE_WORK_UNITS, review_work
from webhook.admission.decision import Admission, Outcome
from webhook.deadline import Deadline

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes
    content_type: str = "application/json"


# Why a review left the event loop, besides a decision's PendingReason.
LARGE_BODY: Final = "large-body"
OVER_WORK_BUDGET: Final = "work-budget"


@dataclass(frozen=True, slots=True)
class Deferred:
    """Work the event loop must not run: a thread calls `work`, whose Reply is the answer."""

    work: Callable[[], Reply]
    reason: str


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

    def answer(self, body: bytes, content_type: str, *, deadline: Deadline) -> Reply:
        """The reply to one POST /mutate, API calls included, within `deadline`."""
        started = time.perf_counter()
        parsed = self._parse(body, content_type, started)
        if isinstance(parsed, Reply):
            return parsed
        return self._decide(parsed, started, deadline)

    def answer_inline(
        self, body: bytes, content_type: str, *, deadline: Deadline
    ) -> Reply | Deferred:
        """The reply if it is quick and needs no API call, else the work for a thread.

        Nothing is logged or counted for a deferred review until the thread has decided it.
        """
        if len(body) > INLINE_REVIEW_BYTES:
            return Deferred(lambda: self.answer(body, content_type, deadline=deadline), LARGE_BODY)
        started = time.perf_counter()
        parsed = self._parse(body, content_type, started)
        if isinstance(parsed, Reply):
            return parsed
        if review_work(parsed) > INLINE_WORK_UNITS:
            reason = OVER_WORK_BUDGET
        else:
            try:
                decided = self.admission.decide_inline(parsed)
            except Exception:
                return self._errored(parsed, started)
            if isinstance(decided, Outcome):
                return self._reply(parsed, decided, started)
            reason = decided.reason.value
        return Deferred(lambda: self._decide(parsed, started, deadline), reason)

    def answer_policy_check(self, body: bytes, content_type: str) -> Reply:
        """The reply to one POST /validate-policy: the policy ConfigMap judged by the webhook's
        own loader, so `kubectl apply` refuses an edit reload would reject. No API calls."""
        if not is_json(content_type):
            return error_reply(400, "expected Content-Type: application/json")
        try:
            answer = policy_check.review_policy(review.decode_body(body))
        except BadReviewError as exc:
            log.warning("policy review rejected: %s", exc, extra={"decision": "invalid"})
            return error_reply(exc.status, str(exc))
        allowed = answer["response"]["allowed"]
        log.info(
            "policy review uid=%s allowed=%s",
            answer["response"]["uid"],
            allowed,
            extra={
                "uid": answer["response"]["uid"],
                "decision": "allowed" if allowed else "denied",
            },
        )
        return Reply(200, jsonio.dumps(answer))

    def _parse(self, body: bytes, content_type: str, started: float) -> AdmissionRequest | Reply:
        if not is_json(content_type):
            return self._invalid("expected Content-Type: application/json", 400, started)
        try:
            return review.parse_request(review.decode_body(body))
        except BadReviewError as exc:
            return self._invalid(str(exc), exc.status, started)

    def _decide(self, parsed: AdmissionRequest, started: float, deadline: Deadline) -> Reply:
        try:
            outcome = self.admission.review(parsed, deadline=deadline)
        except Exception:
            return self._errored(parsed, started)
        return self._reply(parsed, outcome, started)

    @staticmethod
    def _fields(parsed: AdmissionRequest) -> dict[str, Any]:
        metadata = parsed.object.get("metadata") or {}
        return {
            "uid": parsed.uid,
            "namespace": parsed.namespace,
            "pod": metadata.get("name") or metadata.get("generateName", ""),
            "operation": parsed.operation,
        }

    def _errored(self, parsed: AdmissionRequest, started: float) -> Reply:
        metrics.observe_review(parsed.operation, "error", time.perf_counter() - started, 0)
        log.exception(
            "review %s failed", parsed.uid, extra={**self._fields(parsed), "decision": "error"}
        )
        return Reply(200, jsonio.dumps(review.build_errored(parsed.uid)))

    def _reply(self, parsed: AdmissionRequest, outcome: Outcome, started: float) -> Reply:
        elapsed = time.perf_counter() - started
        metrics.observe_review(
            parsed.operation, outcome.decision, elapsed, outcome.templates_created
        )
        if outcome.path is not None:
            metrics.observe_path(outcome.path)
        fields = self._fields(parsed)
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
