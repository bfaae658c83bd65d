"""One admission decision: AdmissionRequest -> Outcome (the AdmissionReview answer and a word).

Joins the pure core to the cluster: reads namespace labels when the policy selects by label,
creates the ResourceClaimTemplate (or shared ResourceClaim) a rewritten pod needs before it is
admitted, never on a dry run, and remembers created templates so the next pod of the same
shape costs no API call.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dracore import admission_review as review
from dracore.admission_review import AdmissionRequest, AdmissionReviewOut, Decision
from dracore.errors import TranslationError
from dracore.existing import template_difference
from dracore.policy import Policy
from dracore.translate import (
    Translation,
    check_shared_claim_fits,
    restore_rewritten,
    translate,
)
from webhook.admission.gateway import ClusterGateway
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


class NeedsCluster(Exception):
    """Raised by `Admission.review(..., cluster=False)` where the decision needs an API call.

    The server's event loop decides reviews inline when it can (no thread hand-off) and passes
    the rest, the ones that would block on the network, to a thread.
    """


@dataclass(frozen=True, slots=True)
class Outcome:
    """The response and a one-word decision for logs and metrics."""

    response: AdmissionReviewOut
    decision: Decision
    templates_created: int = 0


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

    def review(self, request: AdmissionRequest, *, cluster: bool = True) -> Outcome:
        """The decision on one request; with `cluster=False`, NeedsCluster instead of API calls."""
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
        labels: dict[str, str] = {}
        try:
            if policy.needs_namespace_labels and request.namespace:
                labels = self._namespace_labels(request.namespace, cluster=cluster)
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
            created = self._provision(result, dry_run=request.dry_run, cluster=cluster)
        except (TranslationError, GatewayError) as exc:
            return Outcome(review.build_denied(request.uid, str(exc)), "denied")
        response = review.build_patched(
            request.uid, old=request.object, new=result.pod, warnings=result.warnings
        )
        return Outcome(response, "patched", created)

    @staticmethod
    def _key(template: dict[str, Any]) -> tuple[str, str]:
        return template["metadata"].get("namespace", ""), template["metadata"]["name"]

    def _namespace_labels(self, namespace: str, *, cluster: bool) -> dict[str, str]:
        if self._gateway is None:
            return {}
        now = time.monotonic()
        cached = self._labels.get(namespace)
        if cached and cached[0] > now:
            return cached[1]
        if not cluster:
            raise NeedsCluster
        labels = self._gateway.namespace_labels(namespace)
        self._labels[namespace] = (now + self._labels_ttl, labels)
        return labels

    def _provision(self, result: Translation, *, dry_run: bool, cluster: bool) -> int:
        """Make sure the objects the pod will reference exist; returns how many were created."""
        if not cluster and self._gateway is not None:
            unseen = any(self._key(t) not in self._seen for t in result.templates)
            if result.shared_claims or (unseen and not dry_run):
                raise NeedsCluster
        created = 0
        for claim in result.shared_claims:
            namespace, name = claim["metadata"].get("namespace", ""), claim["metadata"]["name"]
            if self._gateway is None:
                continue
            existing = self._gateway.get_claim(namespace, name)
            if existing is None and not dry_run:
                if self._gateway.create_claim(claim):
                    created += 1
                    continue
                existing = self._gateway.get_claim(namespace, name)  # lost a race: check the winner
            if existing is not None:
                misfit = check_shared_claim_fits(existing, claim, max_devices=result.max_devices)
                if misfit:
                    raise TranslationError(
                        f"annotation kubectl-dra.io/shared-claim names ResourceClaim {namespace}/{name}, "
                        f"but {misfit}; pick another claim name or ask for fewer devices"
                    )
        if dry_run or self._gateway is None:
            return created
        for template in result.templates:
            key = self._key(template)
            if key in self._seen:
                continue
            try:
                made = self._gateway.create_template(template)
                existing = None if made else self._gateway.get_template(*key)
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
