"""What Enforce would do to each workload's pods (pure), from the webhook's own translation.

`decide` runs `dracore.translate.translate` on the workload's pod template in Enforce mode
(whatever mode the policy in force has), with the namespace and its labels, exactly as the
webhook does for each pod the workload creates. The outcome is one of:

- `rewritten`: the DeviceClass(es), count, sharing and CEL selectors of the claim the pods would
  get (read from the ResourceClaimTemplate or shared claim the translation produced);
- `unchanged`: why (exempt namespace, skip annotation, a resource the policy does not map);
- `denied`: the webhook's message for that pod, naming the workload instead of a pod.

Independently, `exempt` says why the webhook would not even see the pods: the policy's
`exemptNamespaces`, the skip annotation, or no registration of ours whose namespaceSelector
selects the namespace (when any registration exists).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from dracore.errors import TranslationError
from dracore.policy import Policy
from dracore.record import RewrittenRecord
from dracore.translate import REWRITTEN_ANNOTATION, SKIP_ANNOTATION, translate
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

    def total(self, resource: str) -> int:
        return self.demand.get(resource, 0) * self.replicas


def _count(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return max(0, value)
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return 0  # not a whole number: the webhook denies it; nothing is counted


def legacy_demand(pod: Obj, policy: Policy) -> dict[str, int]:
    """Devices per pod for each legacy resource (`nvidia.com/*` or one the policy maps), as the
    device plugin counts them: max(largest plain init container, app containers + sidecars)."""
    spec = pod.get("spec") or {}
    app: dict[str, int] = {}
    init: dict[str, int] = {}

    def add(container: Any, into: dict[str, int], combine: str) -> None:
        resources = (container.get("resources") if isinstance(container, Mapping) else None) or {}
        limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
        for resource in set(limits) | set(requests):
            if not (resource.startswith(LEGACY_PREFIX) or policy.resource_rule(resource)):
                continue
            n = _count(limits.get(resource, requests.get(resource)))
            into[resource] = (
                into.get(resource, 0) + n if combine == "sum" else max(into.get(resource, 0), n)
            )

    for container in spec.get("initContainers") or []:
        sidecar = isinstance(container, Mapping) and container.get("restartPolicy") == "Always"
        add(container, app if sidecar else init, "sum" if sidecar else "max")
    for container in spec.get("containers") or []:
        add(container, app, "sum")
    return {r: max(app.get(r, 0), init.get(r, 0)) for r in sorted(set(app) | set(init))}


def label_selector_matches(selector: Obj | None, labels: Mapping[str, str]) -> bool:
    """A metav1.LabelSelector against labels (an empty or missing selector matches all)."""
    if not selector:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op = expr.get("key", ""), expr.get("operator")
        values = set(expr.get("values") or [])
        present = key in labels
        if op == "In" and not (present and labels[key] in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True


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
    selectors: Sequence[Obj | None] | None,
) -> WorkloadAudit:
    """The audit row of one workload. `selectors`: the namespaceSelectors of our webhook
    registrations (None: no registration, so nothing is skipped for that reason)."""
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
    elif selectors is not None and not any(label_selector_matches(s, labels) for s in selectors):
        exempt = f"no kubectl-dra webhook registration selects namespace {workload.namespace}"
    demand = legacy_demand(pod, policy)

    def row(
        decision: Decision,
        reason: str,
        sharing: str | None = None,
        requests: tuple[ClaimRequest, ...] = (),
        claim_source: str | None = None,
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
        )

    if exempt and exempt.startswith("no kubectl-dra webhook"):
        # The API server never sends these pods to the webhook: they are admitted as they are.
        return row("unchanged", exempt)
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
    return row("rewritten", f"claim of {summary}", record.sharing, requests, source)


def decide_all(
    workloads: Iterable[Workload],
    *,
    policy: Policy,
    namespaces: Mapping[str, Mapping[str, str]],
    selectors: Sequence[Obj | None] | None,
) -> list[WorkloadAudit]:
    """Rows for the workloads that ask for a legacy resource; `namespaces`: name -> labels."""
    rows = []
    for workload in workloads:
        if not legacy_demand(workload.pod, policy):
            continue
        labels = namespaces.get(workload.namespace) or {
            "kubernetes.io/metadata.name": workload.namespace
        }
        rows.append(decide(workload, policy=policy, labels=labels, selectors=selectors))
    return rows
