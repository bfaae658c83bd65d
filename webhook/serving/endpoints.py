"""What the webhook answers, without a web framework: POST /mutate, /healthz, /readyz, /metrics.

`Endpoints` is the application: the production server (`webhook.serving.http11`) calls it from
its event loop, and the in-process tests call it directly (tests.builders.webhook_client). Each
returns a `Reply`, ready to be written.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

from dracore import jsonio
from dracore.policy import Policy
from webhook.admission.decision import Admission
from webhook.admission.gateway import ClusterGateway
from webhook.admission.handler import Reply, Reviewer
from webhook.serving import metrics
from webhook.serving.reload import Reloadable
from webhook.settings import Settings

JSON: Final = "application/json"


class Endpoints:
    def __init__(self, reviewer: Reviewer, status: Sequence[Reloadable] = ()) -> None:
        self.reviewer = reviewer
        self.status = tuple(status)

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
        return cls(Reviewer(Admission(policy=provider, gateway=gateway)), status)

    def mutate(self, body: bytes, content_type: str, *, cluster: bool = True) -> Reply:
        return self.reviewer.answer(body, content_type, cluster=cluster)

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
