"""What the webhook answers, without a web framework: POST /mutate, POST /validate-policy,
/healthz, /readyz, /metrics.

`Endpoints` is the application. The production server
(`webhook.serving.http11`) hands every request to `route`, on its event loop, and gets a `Reply`
ready to be written, or a `Deferred` to run on a thread (a review that needs the API server or
more work than the loop may do, the metrics, which read every worker's files); the protocol
decides nothing itself. `mutate`, `healthz`, `readyz` and `metrics` answer one route each, on
the caller's thread (the in-process tests call them through tests.builders.webhook_client).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

from dracore import jsonio
from dracore.policy import Policy
from webhook import metrics
from webhook.admission.decision import Admission
from webhook.admission.gateway import ClusterGateway
from webhook.admission.handler import Deferred, Reply, Reviewer, error_reply
from webhook.deadline import Deadline
from webhook.serving.reload import Reloadable
from webhook.settings import DEFAULT_REVIEW_TIMEOUT, Settings

JSON: Final = "application/json"
PROBES: Final = frozenset({b"/healthz", b"/readyz", b"/metrics"})
# The admission routes the API server calls; with a probe port, the only ones on the serving port.
MUTATE: Final = frozenset({b"/mutate", b"/validate-policy"})
EVERYTHING: Final = MUTATE | PROBES


class Endpoints:
    def __init__(
        self,
        reviewer: Reviewer,
        status: Sequence[Reloadable] = (),
        *,
        review_timeout: float = DEFAULT_REVIEW_TIMEOUT,
    ) -> None:
        self.reviewer = reviewer
        self.status = tuple(status)
        self.review_timeout = review_timeout  # the registration's timeoutSeconds

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        policy: Policy | Callable[[], Policy] | None = None,
        gateway: ClusterGateway | None = None,
        status: Sequence[Reloadable] = (),
    ) -> Endpoints:
        """`policy` is a Policy, or a provider called once per review (a PolicyReloader, so a
        reloaded policy takes effect on the next review); default: settings.policy_file, else
        the built-in policy. `status` items report their state in /readyz."""
        if policy is None:
            policy = (
                Policy.from_file(settings.policy_file) if settings.policy_file else Policy.default()
            )
        if isinstance(policy, Policy):
            active = policy
            provider: Callable[[], Policy] = lambda: active  # noqa: E731
        else:
            provider = policy
        reviewer = Reviewer(Admission(policy=provider, gateway=gateway))
        return cls(reviewer, status, review_timeout=settings.review_timeout)

    def route(
        self,
        method: bytes,
        target: bytes,
        content_type: str,
        body: bytes,
        deadline: Deadline,
        *,
        served: frozenset[bytes] = EVERYTHING,
    ) -> Reply | Deferred:
        """One request, on the event loop: its reply, or the work a thread must do for it.

        `served` is what the listener offers: everything, or (with a probe port) only /mutate
        on the serving port and only the probes on the other.
        """
        path = target.partition(b"?")[0]
        if path not in served:
            return error_reply(404, f"not found; {_offer(served)}")
        if path == b"/mutate":
            if method != b"POST":
                return error_reply(405, "use POST for /mutate")
            return self.reviewer.answer_inline(body, content_type, deadline=deadline)
        if path == b"/validate-policy":
            if method != b"POST":
                return error_reply(405, "use POST for /validate-policy")
            # Parsing a policy of up to the body limit is not work for the loop.
            return Deferred(lambda: self.validate_policy(body, content_type), "policy-check")
        if method != b"GET":
            return error_reply(405, f"use GET for {path.decode('latin-1')}")
        if path == b"/metrics":
            return Deferred(self.metrics, "metrics")
        return self.healthz() if path == b"/healthz" else self.readyz()

    def mutate(self, body: bytes, content_type: str) -> Reply:
        """POST /mutate on the caller's thread; the deadline starts now."""
        deadline = Deadline.for_review(self.review_timeout)
        return self.reviewer.answer(body, content_type, deadline=deadline)

    def validate_policy(self, body: bytes, content_type: str) -> Reply:
        """POST /validate-policy: a policy ConfigMap judged by the loader, on the caller's thread."""
        return self.reviewer.answer_policy_check(body, content_type)

    @staticmethod
    def healthz() -> Reply:
        return Reply(200, jsonio.dumps({"status": "ok"}))

    def readyz(self) -> Reply:
        """Ready while a policy and a certificate are in force, even a stale one.

        A rejected policy or certificate edit is reported (`status: degraded` and the error), but
        stays 200: every replica sees the same bad file, and failing readiness on all of them
        would take the webhook away and hand every GPU pod to the failurePolicy instead.
        """
        checks: dict[str, Any] = {item.name: item.status() for item in self.status}
        degraded = any(not check.get("ok", True) for check in checks.values())
        return Reply(
            200, jsonio.dumps({"status": "degraded" if degraded else "ok", "checks": checks})
        )

    @staticmethod
    def metrics() -> Reply:
        data, content_type = metrics.render()
        return Reply(200, data, content_type)


def _offer(served: frozenset[bytes]) -> str:
    if b"/mutate" not in served:
        return "this port serves GET /healthz, /readyz and /metrics"
    if served & PROBES:
        return "the webhook serves POST /mutate and POST /validate-policy"
    return (
        "this port serves POST /mutate and POST /validate-policy; "
        "the probes and metrics are on the probe port"
    )
