"""One admission decision: AdmissionRequest -> Outcome (the AdmissionReview answer and a word).

Joins the pure core to the cluster: reads namespace labels when the policy selects by label,
creates the ResourceClaimTemplate (or shared ResourceClaim) a rewritten pod needs before it is
admitted, never on a dry run, and remembers created templates so the next pod of the same
shape costs no API call.

Two entry points: `decide_inline` never calls the API and says, with a `Pending` and its
reason, when the decision needs a call; `review` decides, calling the API within the review's
`Deadline`. The server runs the first on its event loop and the second on a thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, overload

from dracore import admission_review as review
from dracore.admission_review import AdmissionRequest, AdmissionReviewOut, Decision
from dracore.errors import TranslationError
from dracore.existing import template_difference
from dracore.paths import NOTHING, PathChoice, choose_path, rename_for_scheduler
from dracore.policy import Policy
from dracore.record import SCHEDULER, TEMPLATES
from dracore.translate import (
    Translation,
    check_shared_claim_fits,
    restore_rewritten,
    translate,
)
from webhook.admission.gateway import ClusterGateway
from webhook.deadline import Deadline
from webhook.errors import GatewayError

log = logging.getLogger(__name__)


class SeenCache:
    """A bounded, thread-safe set of keys that forgets entries after `ttl` seconds.

    Forgetting matters: if someone deletes a template we created, the next pod recreates it.
    """

    def __init__(
        self, *, ttl: float = 300.0, size: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._entries: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._ttl = ttl
        self._size = size
        self._clock = clock
        self._lock = threading.Lock()

    def __contains__(self, key: tuple[str, str]) -> bool:
        with self._lock:
            expires = self._entries.get(key)
            if expires is None:
                return False
            if expires < self._clock():
                del self._entries[key]
                return False
            return True

    def add(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._entries[key] = self._clock() + self._ttl
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)


class PendingReason(StrEnum):
    """Why a decision cannot be made without the API server."""

    UNSEEN_TEMPLATE = "unseen-template"  # a template not known to exist: create or check it
    SHARED_CLAIM = "shared-claim"  # a named claim: read it (even on a dry run), maybe create it
    NAMESPACE_LABELS = "namespace-labels"  # a rule selects by label; not in the short cache


@dataclass(frozen=True, slots=True)
class Pending:
    """`decide_inline`'s answer when the decision needs an API call."""

    reason: PendingReason


@dataclass(frozen=True, slots=True)
class Outcome:
    """The response and a one-word decision for logs and metrics."""

    response: AdmissionReviewOut
    decision: Decision
    templates_created: int = 0
    path: str | None = None  # of a rewritten pod: record.TEMPLATES or record.SCHEDULER


class Admission:
    def __init__(
        self,
        *,
        policy: Callable[[], Policy],
        gateway: ClusterGateway | None,
        cache: SeenCache | None = None,
    ) -> None:
        self._policy = policy
        self._gateway = gateway
        self._seen = cache or SeenCache()
        # Namespace labels change rarely; a short memory saves a GET per review.
        self._labels: dict[str, tuple[float, dict[str, str]]] = {}
        self._labels_ttl = 30.0
        self._policy_digest: str | None = None

    def decide_inline(self, request: AdmissionRequest) -> Outcome | Pending:
        """The decision if it needs no API call, else what it needs; never blocks."""
        return self._decide(request, None)

    def review(self, request: AdmissionRequest, *, deadline: Deadline) -> Outcome:
        """The decision, with whatever API calls it needs, all within `deadline`."""
        return self._decide(request, deadline)

    @overload
    def _decide(self, request: AdmissionRequest, deadline: Deadline) -> Outcome: ...
    @overload
    def _decide(self, request: AdmissionRequest, deadline: None) -> Outcome | Pending: ...

    def _decide(self, request: AdmissionRequest, deadline: Deadline | None) -> Outcome | Pending:
        """With `deadline` None (inline) a Pending replaces the first API call."""
        if request.kind not in ("Pod", ""):
            return Outcome(review.build_allowed(request.uid), "unchanged")
        if request.operation == "UPDATE" and request.old_object:
            policy = self._policy()
            if policy.mode == "Disabled":
                return Outcome(review.build_allowed(request.uid), "unchanged")
            # A re-applied legacy manifest would put back fields we removed, which the API
            # server forbids changing; take those back, and only those.
            restored = restore_rewritten(request.old_object, request.object, policy=policy)
            response = review.build_patched(request.uid, old=request.object, new=restored)
            return Outcome(response, "patched" if "patch" in response["response"] else "unchanged")
        if request.operation != "CREATE":
            return Outcome(review.build_allowed(request.uid), "unchanged")
        policy = self._policy()
        self._notice_policy(policy)
        labels: dict[str, str] = {}
        try:
            if policy.needs_namespace_labels and request.namespace and self._gateway is not None:
                cached = self._cached_labels(request.namespace)
                if cached is not None:
                    labels = cached
                elif deadline is None:
                    return Pending(PendingReason.NAMESPACE_LABELS)
                else:
                    labels = self._read_labels(self._gateway, request.namespace, deadline)
            result = translate(
                request.object,
                policy=policy,
                namespace=request.namespace or None,
                namespace_labels=labels,
            )
            if not result.changed:
                response = review.build_allowed(
                    request.uid, warnings=result.warnings, audit=result.audit
                )
                return Outcome(response, "unchanged")
            choice = choose_path(
                request.object,
                policy=policy,
                namespace=request.namespace or None,
                namespace_labels=labels,
                offer=self._gateway.offer() if self._gateway is not None else NOTHING,
            )
            if choice.path == SCHEDULER:
                return self._scheduler_outcome(request, policy, labels, choice, result)
            created = 0
            if self._gateway is not None:
                if deadline is None:
                    reason = self._needs_api(result, dry_run=request.dry_run)
                    if reason is not None:
                        return Pending(reason)
                else:
                    created = self._provision(
                        self._gateway, result, dry_run=request.dry_run, deadline=deadline
                    )
        except (TranslationError, GatewayError) as exc:
            return Outcome(review.build_denied(request.uid, str(exc)), "denied")
        warnings = (*result.warnings, *([choice.warning] if choice.warning else []))
        response = review.build_patched(
            request.uid, old=request.object, new=result.pod, warnings=warnings
        )
        return Outcome(response, "patched", created, TEMPLATES)

    @staticmethod
    def _scheduler_outcome(
        request: AdmissionRequest,
        policy: Policy,
        labels: dict[str, str],
        choice: PathChoice,
        result: Translation,
    ) -> Outcome:
        """The legacy resource renamed to the class's implicit name: the scheduler makes the
        claim, so nothing is created here. `result` is the template path's rewrite, which has
        already applied the policy's limits and denials to this pod."""
        renamed = rename_for_scheduler(
            request.object,
            classes=dict(choice.classes),
            policy=policy,
            rules=policy.rules_for(request.namespace or "", labels),
        )
        response = review.build_patched(
            request.uid, old=request.object, new=renamed, warnings=result.warnings
        )
        return Outcome(response, "patched", 0, SCHEDULER)

    def _notice_policy(self, policy: Policy) -> None:
        """A new policy may name classes the last read of the cluster did not look for."""
        if policy.digest != self._policy_digest:
            self._policy_digest = policy.digest
            if self._gateway is not None:
                self._gateway.refresh_offer()

    @staticmethod
    def _key(template: dict[str, Any]) -> tuple[str, str]:
        return template["metadata"].get("namespace", ""), template["metadata"]["name"]

    def _cached_labels(self, namespace: str) -> dict[str, str] | None:
        cached = self._labels.get(namespace)
        return cached[1] if cached and cached[0] > time.monotonic() else None

    def _read_labels(
        self, gateway: ClusterGateway, namespace: str, deadline: Deadline
    ) -> dict[str, str]:
        labels = gateway.namespace_labels(namespace, deadline=deadline)
        self._labels[namespace] = (time.monotonic() + self._labels_ttl, labels)
        return labels

    def _needs_api(self, result: Translation, *, dry_run: bool) -> PendingReason | None:
        if result.shared_claims:
            return PendingReason.SHARED_CLAIM
        if not dry_run and any(self._key(t) not in self._seen for t in result.templates):
            return PendingReason.UNSEEN_TEMPLATE
        return None

    def _provision(
        self, gateway: ClusterGateway, result: Translation, *, dry_run: bool, deadline: Deadline
    ) -> int:
        """Make sure the objects the pod will reference exist; returns how many were created."""
        created = 0
        for claim in result.shared_claims:
            namespace, name = claim["metadata"].get("namespace", ""), claim["metadata"]["name"]
            existing = gateway.get_claim(namespace, name, deadline=deadline)
            if existing is None and not dry_run:
                if gateway.create_claim(claim, deadline=deadline):
                    created += 1
                    continue
                # Lost a race: check the winner.
                existing = gateway.get_claim(namespace, name, deadline=deadline)
            if existing is not None:
                misfit = check_shared_claim_fits(existing, claim, max_devices=result.max_devices)
                if misfit:
                    raise TranslationError(
                        f"annotation kubectl-dra.io/shared-claim names ResourceClaim {namespace}/{name}, "
                        f"but {misfit}; pick another claim name or ask for fewer devices"
                    )
        if dry_run:
            return created
        for template in result.templates:
            key = self._key(template)
            if key in self._seen:
                continue
            try:
                made = gateway.create_template(template, deadline=deadline)
                existing = None if made else gateway.get_template(*key, deadline=deadline)
            except GatewayError as exc:
                raise GatewayError(
                    f"could not create ResourceClaimTemplate {key[0]}/{key[1]} for this pod: {exc}"
                ) from exc
            if not made:
                # Its name is a hash of the spec, but anyone may have created an object of that
                # name: use it only if it is what this pod needs.
                if existing is None:
                    raise GatewayError(
                        f"ResourceClaimTemplate {key[0]}/{key[1]} was deleted while the webhook "
                        "checked it; retry"
                    )
                difference = template_difference(existing, template)
                if difference:
                    raise TranslationError(
                        f"ResourceClaimTemplate {key[0]}/{key[1]} already exists, but {difference}; "
                        "the webhook did not make it for this pod (delete it, or ask your platform "
                        "team who did)"
                    )
            self._seen.add(key)
            created += int(made)
        return created
