"""What Enforce would do to each workload's pods (pure), from the webhook's own translation.

`decide` runs `dracore.translate.translate` on the workload's pod template in Enforce mode
(whatever mode the policy in force has), with the namespace and its labels, exactly as the
webhook does for each pod the workload creates. The outcome is one of:

- `rewritten`: the DeviceClass(es), count, sharing and CEL selectors of the claim the pods would
  get (read from the ResourceClaimTemplate or shared claim the translation produced);
- `unchanged`: why (exempt namespace, skip annotation, a resource the policy does not map);
- `denied`: the webhook's message for that pod, naming the workload instead of a pod.

Independently, `exempt` says why the webhook would not even see the pods: the policy's
`exemptNamespaces`, the skip annotation, or (when any registration exists) no registration of
ours that would send them: the namespace opted out, or matchConditions that do not match the
resources they ask for (registrations.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from dracore.demand import placement, pod_demand
from dracore.errors import TranslationError
from dracore.policy import Policy
from dracore.record import RewrittenRecord
from dracore.translate import REWRITTEN_ANNOTATION, SKIP_ANNOTATION, translate
from kubectl_dra.audit.registrations import Registration, unseen_reason
from kubectl_dra.audit.workloads import Workload

Decision = Literal["rewritten", "unchanged", "denied"]
LEGACY_PREFIX: Final = "nvidia.com/"
Obj = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ClaimRequest:
    """One request of the claim a rewritten pod gets."""

    name: str
    device_class: str
    count: int
    selectors: tuple[str, ...]  # CEL, as the webhook writes them


@dataclass(frozen=True, slots=True)
class WorkloadAudit:
    namespace: str
    kind: str
    name: str
    replicas: int
    demand: Mapping[str, int]  # legacy resource -> devices per pod (device-plugin semantics)
    exempt: str | None  # why the webhook would not touch its pods, or None
    decision: Decision
    reason: str  # unchanged: why; denied: the webhook's message; rewritten: a summary
    sharing: str | None
    requests: tuple[ClaimRequest, ...]
    # rewritten: the ResourceClaimTemplate (or shared ResourceClaim) the pods would reference;
    # its name is a hash of the claim's spec, so it equals the webhook's only for the same claim.
    claim_source: str | None = None
    # rewritten to a named claim every replica shares: its name (allocated once for all of them).
    shared_claim: str | None = None
    # rewritten: the nodeSelector and required node affinity the pods keep after the rewrite.
    placement: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def total(self, resource: str) -> int:
        return self.demand.get(resource, 0) * self.replicas


def legacy_demand(pod: Obj, policy: Policy) -> dict[str, int]:
    """Devices per pod for each legacy resource (`nvidia.com/*` or one the policy maps), counted
    as the scheduler counts them (dracore.demand.pod_demand)."""
    spec = pod.get("spec")
    return pod_demand(
        spec if isinstance(spec, Mapping) else {},
        lambda resource: resource.startswith(LEGACY_PREFIX) or bool(policy.resource_rule(resource)),
    )


def namespace_labels(namespace: Obj) -> dict[str, str]:
    labels = dict((namespace.get("metadata") or {}).get("labels") or {})
    name = (namespace.get("metadata") or {}).get("name", "")
    labels.setdefault("kubernetes.io/metadata.name", name)  # set by the API server since 1.21
    return labels


def _requests_of(claim: Obj) -> tuple[ClaimRequest, ...]:
    requests = (
        ((claim.get("spec") or {}).get("spec") or claim.get("spec") or {}).get("devices") or {}
    ).get("requests") or []
    found = []
    for request in requests:
        exactly = request.get("exactly") or {}
        found.append(
            ClaimRequest(
                name=str(request.get("name", "")),
                device_class=str(exactly.get("deviceClassName", "")),
                count=int(exactly.get("count") or 1),
                selectors=tuple(
                    str((s.get("cel") or {}).get("expression", ""))
                    for s in exactly.get("selectors") or []
                ),
            )
        )
    return tuple(found)


def decide(
    workload: Workload,
    *,
    policy: Policy,
    labels: Mapping[str, str],
    hooks: Sequence[Registration],
) -> WorkloadAudit:
    """The audit row of one workload. `hooks`: our live webhook registrations (none: nothing
    is left out for that reason)."""
    enforce = dataclasses.replace(policy, mode="Enforce")
    pod = workload.pod
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    exempt = None
    if workload.namespace in policy.exempt_namespaces:
        exempt = f"namespace {workload.namespace} is in the policy's exemptNamespaces"
    elif (
        annotations.get(SKIP_ANNOTATION) == "true"
        and policy.rules_for(workload.namespace, labels).allow_skip
    ):
        exempt = f"annotation {SKIP_ANNOTATION} is true (allowSkip)"
    demand = legacy_demand(pod, policy)
    unseen = None
    if exempt is None:
        unseen = unseen_reason(
            hooks, pod=pod, namespace=workload.namespace, labels=labels, resources=list(demand)
        )
        exempt = unseen

    def row(
        decision: Decision,
        reason: str,
        sharing: str | None = None,
        requests: tuple[ClaimRequest, ...] = (),
        claim_source: str | None = None,
        shared_claim: str | None = None,
        kept_placement: Mapping[str, Any] | None = None,
    ) -> WorkloadAudit:
        return WorkloadAudit(
            workload.namespace,
            workload.kind,
            workload.name,
            workload.replicas,
            demand,
            exempt,
            decision,
            reason,
            sharing,
            requests,
            claim_source,
            shared_claim,
            kept_placement or {},
        )

    if unseen:
        # The API server never sends these pods to the webhook: they are admitted as they are.
        return row("unchanged", unseen)
    subject = f'{workload.kind} "{workload.namespace}/{workload.name}"'
    try:
        result = translate(
            pod,
            policy=enforce,
            namespace=workload.namespace,
            namespace_labels=labels,
            subject=subject,
        )
    except TranslationError as exc:
        return row("denied", str(exc))
    if not result.changed:
        return row("unchanged", result.reason)
    claims = result.templates or result.shared_claims
    requests = _requests_of(claims[0]) if claims else ()
    record = RewrittenRecord.from_annotation(
        result.pod["metadata"]["annotations"][REWRITTEN_ANNOTATION]
    )
    summary = ", ".join(f"{r.count} {r.device_class}" for r in requests) or "no devices"
    source = record.template or record.resource_claim
    return row(
        "rewritten",
        f"claim of {summary}",
        record.sharing,
        requests,
        source,
        record.resource_claim,
        placement(result.pod.get("spec") or {}),
    )


def decide_all(
    workloads: Iterable[Workload],
    *,
    policy: Policy,
    namespaces: Mapping[str, Mapping[str, str]],
    hooks: Sequence[Registration],
) -> list[WorkloadAudit]:
    """Rows for the workloads that ask for a legacy resource; `namespaces`: name -> labels."""
    rows = []
    for workload in workloads:
        if not legacy_demand(workload.pod, policy):
            continue
        labels = namespaces.get(workload.namespace) or {
            "kubernetes.io/metadata.name": workload.namespace
        }
        rows.append(decide(workload, policy=policy, labels=labels, hooks=hooks))
    return rows
