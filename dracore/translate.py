"""The pure core: a pod asking for `nvidia.com/gpu: N` -> a pod referencing a DRA claim.

`translate(pod, policy=..., namespace=...)` returns a new pod (the input is never modified), the
ResourceClaimTemplate or shared ResourceClaim it needs, and warnings. A pod the policy refuses
raises TranslationError with a message for its author. No I/O and no API calls here.

Device-plugin semantics are preserved: the count comes from the limit; a sidecar and each app
container have devices of their own; a plain init container reuses the devices of the app
containers and of the sidecars listed after it (not yet started when it runs), and sees exactly
as many as it asked for (requests are split where needed).  As the scheduler counts it, a pod
needs max(apps + sidecars, max over init containers of (init + sidecars before it)) devices.
Ephemeral containers are never touched.

Longer than 500 lines: reading demands, planning requests and building the claim share the
Demand and PlannedRequest types; request planning (`plan_requests`) is the part to move into a
module of its own, once its init-container rules settle.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from dracore import cel, dra, jsonio, selectors, sharing
from dracore import existing as existing_objects
from dracore.demand import claim_device_count
from dracore.errors import TranslationError, shown
from dracore.names import is_dns_subdomain, short_hash, unique_label
from dracore.planning import (
    PlannedRequest,
    check_largest,
    check_limits,
    collect_demands,
    plan_requests,
)
from dracore.policy import MAX_DEVICES_PER_CLAIM, Policy, SharingRules
from dracore.record import ContainerRecord, RecordError, RewrittenRecord

PREFIX: Final = "kubectl-dra.io/"
SKIP_ANNOTATION: Final = PREFIX + "skip"
POD_SHARING_ANNOTATION: Final = PREFIX + "pod-sharing"
SHARED_CLAIM_ANNOTATION: Final = PREFIX + "shared-claim"
REWRITTEN_ANNOTATION: Final = PREFIX + "rewritten"
MANAGED_BY_LABEL: Final = "app.kubernetes.io/managed-by"
MANAGED_BY: Final = "kubectl-dra"
RESOURCE_API_VERSION: Final = "resource.k8s.io/v1"
DEFAULT_CLAIM_NAME: Final = "gpu"

ContainerKind = dra.ContainerKind
_LISTS: Final = dra.LIST_OF_KIND


@dataclass(frozen=True, slots=True)
class Translation:
    """What the webhook (or `kubectl dra convert`) should do with one pod."""

    pod: dict[str, Any]
    changed: bool
    reason: str
    templates: tuple[dict[str, Any], ...] = ()
    shared_claims: tuple[dict[str, Any], ...] = ()
    warnings: tuple[str, ...] = ()
    audit: Mapping[str, str] = field(default_factory=dict)
    # The most devices the pod may see: an existing shared claim holding more is refused.
    max_devices: int = MAX_DEVICES_PER_CLAIM


def translate(
    pod: Mapping[str, Any],
    *,
    policy: Policy,
    namespace: str | None,
    namespace_labels: Mapping[str, str] | None = None,
    subject: str | None = None,
) -> Translation:
    """Rewrite one pod (or pod template) under `policy`; raises TranslationError to deny it.

    `subject` names the object in messages (default: the pod's namespace/name).
    """
    problem = dra.pod_shape_problem(pod)
    if problem:
        raise TranslationError(f"{subject or 'pod'}: {problem}")
    metadata = pod.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    if policy.mode == "Disabled":
        return _keep(pod, "policy mode is Disabled")
    if namespace and namespace in policy.exempt_namespaces:
        return _keep(pod, f"namespace {namespace} is exempt")
    spec = pod.get("spec") or {}
    # The rewritten annotation proves nothing (a pod author can write it): only a pod that no
    # longer asks for a legacy resource is left alone.
    if not _has_legacy_resource(spec, policy):
        reason = "already rewritten" if REWRITTEN_ANNOTATION in annotations else ""
        return _keep(pod, reason or "no legacy GPU resources")

    rules = policy.rules_for(namespace or "", namespace_labels)
    who = subject or dra.describe_object(pod, kind="pod", namespace=namespace)
    if annotations.get(SKIP_ANNOTATION) == "true":
        return _skip(pod, policy=policy, rules=rules, namespace=namespace, who=who)
    if policy.mode == "Audit":
        try:
            would = _rewrite(pod, policy=policy, rules=rules, namespace=namespace, who=who)
        except TranslationError as exc:
            return _keep(
                pod, "audit", warnings=(f"audit: Enforce mode would deny this pod: {exc}",)
            )
        summary = _summary(would)
        return _keep(
            pod,
            "audit",
            warnings=(f"audit: Enforce mode would rewrite this pod: {summary}", *would.warnings),
            audit={PREFIX + "would-rewrite": summary},
        )
    return _rewrite(pod, policy=policy, rules=rules, namespace=namespace, who=who)


def _skip(
    pod: Mapping[str, Any], *, policy: Policy, rules: SharingRules, namespace: str | None, who: str
) -> Translation:
    """A pod annotated skip: left alone where `allowSkip` is true, else denied (Audit: reported)."""
    if rules.allow_skip:
        reason = f"annotation {SKIP_ANNOTATION} is true"
        if policy.mode != "Audit":
            return _keep(pod, reason)
        return _keep(
            pod,
            "audit",
            warnings=(f"audit: {reason}; Enforce mode leaves this pod to the device plugin",),
            audit={PREFIX + "skipped": "true"},
        )
    message = (
        f"{who}: annotation {SKIP_ANNOTATION} is not allowed in namespace "
        f"{namespace or '(none)'} (policy allowSkip: false); remove the annotation, or ask your "
        "platform team to set allowSkip: true for this namespace"
    )
    if policy.mode == "Audit":
        return _keep(
            pod,
            "audit",
            warnings=(f"audit: Enforce mode would deny this pod: {message}",),
            audit={PREFIX + "skipped": "refused"},
        )
    raise TranslationError(message)


def _keep(
    pod: Mapping[str, Any],
    reason: str,
    *,
    warnings: tuple[str, ...] = (),
    audit: Mapping[str, str] | None = None,
) -> Translation:
    return Translation(
        pod=dict(pod), changed=False, reason=reason, warnings=warnings, audit=audit or {}
    )


def _summary(translation: Translation) -> str:
    record = RewrittenRecord.from_annotation(
        translation.pod["metadata"]["annotations"][REWRITTEN_ANNOTATION]
    )
    parts = [f"{c.container}: {c.count} {c.resource}" for c in record.containers]
    target = record.template or record.resource_claim or "no claim"
    return f"{', '.join(parts) or 'nothing'} -> claim {record.claim} ({target}), {record.sharing}"


# --- reading the legacy request --------------------------------------------------------------


def _containers(spec: Mapping[str, Any]) -> list[tuple[ContainerKind, int, dict[str, Any]]]:
    return [(ref.kind, ref.index, ref.container) for ref in dra.pod_containers(spec)]


def _has_legacy_resource(spec: Mapping[str, Any], policy: Policy) -> bool:
    return any(dra.legacy_resources(ref.container, policy) for ref in dra.pod_containers(spec))


# --- the rewrite ------------------------------------------------------------------------------


# What the rewrite may change in a pod. `_writable_copy` copies these and shares the rest (volumes,
# managedFields, ...) with the input, which is never modified: cheaper than copying the whole pod,
# and the patch diff then skips every shared subtree by identity.
_REWRITTEN_SPEC_FIELDS: Final = (
    "containers",
    "initContainers",
    "ephemeralContainers",
    "resourceClaims",
    "tolerations",
    "nodeSelector",
    "affinity",
)


def _writable_copy(pod: Mapping[str, Any]) -> dict[str, Any]:
    new_pod = dict(pod)
    metadata = dict(pod.get("metadata") or {})
    if isinstance(metadata.get("annotations"), dict):
        metadata["annotations"] = dict(metadata["annotations"])
    spec = dict(pod.get("spec") or {})
    for name in _REWRITTEN_SPEC_FIELDS:
        if name in spec:
            spec[name] = jsonio.clone(spec[name])
    new_pod["metadata"] = metadata
    new_pod["spec"] = spec
    return new_pod


def _rewrite(
    pod: Mapping[str, Any],
    *,
    policy: Policy,
    rules: SharingRules,
    namespace: str | None,
    who: str,
) -> Translation:
    new_pod = _writable_copy(pod)
    spec = new_pod["spec"]
    metadata = new_pod["metadata"]
    annotations = metadata.get("annotations") or {}
    demands = collect_demands(spec, policy, who)
    warnings: list[str] = []

    by_container: dict[tuple[ContainerKind, int], list[str]] = {}
    for demand in demands:
        by_container.setdefault((demand.kind, demand.index), []).append(demand.resource)
    for kind, index, container in _containers(spec):
        _strip_legacy(container, by_container.get((kind, index), []))
    active = [d for d in demands if d.count > 0]
    check_largest(active, rules, who)

    shared_claim = annotations.get(SHARED_CLAIM_ANNOTATION)
    pod_sharing = rules.pod_sharing == "Always" or (
        rules.pod_sharing == "Allowed" and annotations.get(POD_SHARING_ANNOTATION) == "true"
    )
    if annotations.get(POD_SHARING_ANNOTATION) == "true" and rules.pod_sharing == "Disabled":
        raise TranslationError(
            f"{who}: annotation {POD_SHARING_ANNOTATION} is not allowed in namespace "
            f"{namespace or '(none)'} (policy podSharing: Disabled); remove the annotation, or ask "
            "your platform team to set podSharing: Allowed for this namespace"
        )
    if shared_claim is not None:
        if rules.shared_claims != "Allowed":
            raise TranslationError(
                f"{who}: annotation {SHARED_CLAIM_ANNOTATION} is not allowed in namespace "
                f"{namespace or '(none)'} (policy sharedClaims: Disabled); remove the annotation, or "
                "ask your platform team to set sharedClaims: Allowed for this namespace"
            )
        if not is_dns_subdomain(shared_claim):
            raise TranslationError(
                f"{who}: annotation {SHARED_CLAIM_ANNOTATION}={shown(shared_claim)} is not a "
                "valid ResourceClaim name (lower-case letters, digits, '-' and '.')"
            )

    # What the record names: the pod claim, and its template or its shared ResourceClaim.
    record_claim: str | None = None
    record_template: str | None = None
    record_resource_claim: str | None = None
    container_requests: dict[tuple[ContainerKind, int, str], tuple[str, ...]] = {}
    dropped = selectors.NodeTerms.of(spec)
    templates: tuple[dict[str, Any], ...] = ()
    claims: tuple[dict[str, Any], ...] = ()
    if active:
        # A shared claim is seen whole by every container of every pod using it.
        one_request_per_resource = pod_sharing or shared_claim is not None
        planned, references = plan_requests(active, shared=one_request_per_resource)
        needed = claim_device_count(
            ((d.resource, d.kind, d.count) for d in active), shared=one_request_per_resource
        )
        check_limits(planned, rules, who, total=needed)
        node = selectors.translate_node_constraints(
            spec,
            mode=rules.node_selectors if _any_nvidia(planned) else "Ignore",
            domain=sharing.NVIDIA_DRIVER,
            who=who,
        )
        warnings += node.warnings
        dropped = dropped.minus(selectors.NodeTerms.of(spec))
        claim_spec = _claim_spec(planned, rules, node.selectors)
        claim_name = unique_label(
            DEFAULT_CLAIM_NAME, {c.get("name") for c in spec.get("resourceClaims") or []}
        )
        pod_claim: dict[str, Any] = {"name": claim_name}
        if shared_claim is not None:
            pod_claim["resourceClaimName"] = shared_claim
            claims = (_object("ResourceClaim", shared_claim, namespace, claim_spec),)
            record_resource_claim = shared_claim
        else:
            template_name = "kubectl-dra-" + short_hash(_canonical(claim_spec))
            template_spec = {
                "metadata": {"labels": {MANAGED_BY_LABEL: MANAGED_BY}},
                "spec": claim_spec,
            }
            templates = (_object("ResourceClaimTemplate", template_name, namespace, template_spec),)
            pod_claim["resourceClaimTemplateName"] = template_name
            record_template = template_name
        spec.setdefault("resourceClaims", []).append(pod_claim)
        for (kind, index, _), request_names in references.items():
            claims_list = (
                spec[_LISTS[kind]][index].setdefault("resources", {}).setdefault("claims", [])
            )
            # A whole claim (shared) or each request, but never the same reference twice.
            wanted = (
                [{"name": claim_name}]
                if shared_claim is not None
                else [{"name": claim_name, "request": r} for r in request_names]
            )
            claims_list.extend(ref for ref in wanted if ref not in claims_list)
        record_claim = claim_name
        if shared_claim is None:
            container_requests = {key: tuple(names) for key, names in references.items()}
        _add_tolerations(spec, sorted({d.resource for d in active}))

    record = RewrittenRecord(
        policy=policy.digest,
        sharing=rules.sharing,
        containers=tuple(
            ContainerRecord(
                d.container,
                d.resource,
                d.count,
                container_requests.get((d.kind, d.index, d.resource)) if d.count > 0 else None,
            )
            for d in demands
        ),
        node_selector=dropped.node_selector,
        node_affinity=dropped.node_affinity,
        claim=record_claim,
        template=record_template,
        resource_claim=record_resource_claim,
    )
    metadata.setdefault("annotations", {})[REWRITTEN_ANNOTATION] = record.to_annotation()
    return Translation(
        pod=new_pod,
        changed=True,
        reason="rewritten",
        templates=templates,
        shared_claims=claims,
        warnings=tuple(warnings),
        max_devices=min(rules.max_gpus_per_pod, MAX_DEVICES_PER_CLAIM),
    )


def restore_rewritten(
    old: Mapping[str, Any], new: Mapping[str, Any], *, policy: Policy
) -> dict[str, Any]:
    """On UPDATE of a pod we rewrote, take back only what a re-apply of its manifest adds again.

    `kubectl apply` of the unchanged legacy manifest patches `nvidia.com/gpu` and the node-label
    terms we translated back into the live pod, and the API server forbids that update. Exactly
    those are taken back: legacy resources the live pod does not have, and the label terms the
    rewritten record lists that the live pod does not have. Every other change is left to the
    API server to judge (a controller may set a nodeSelector on a gated pod, for instance).
    Pods we did not rewrite are returned as they are.
    """
    annotations = (old.get("metadata") or {}).get("annotations") or {}
    if REWRITTEN_ANNOTATION not in annotations:
        return dict(new)
    result = jsonio.clone(dict(new))
    spec = result.get("spec")
    if not isinstance(spec, dict):
        return result
    old_spec = old.get("spec") or {}
    before = {(ref.list_name, ref.name): ref.container for ref in dra.pod_containers(old_spec)}
    for ref in dra.pod_containers(spec):
        had = dra.legacy_resources(before.get((ref.list_name, ref.name)) or {}, policy)
        added = [k for k in dra.legacy_resources(ref.container, policy) if k not in had]
        _strip_legacy(ref.container, added)
    try:
        record = RewrittenRecord.from_annotation(annotations[REWRITTEN_ANNOTATION])
    except RecordError:
        return result  # not a record we wrote: no label terms to take back
    selectors.take_back_node_terms(spec, old_spec, record.node_selector, record.node_affinity)
    return result


def _strip_legacy(container: dict[str, Any], legacy: list[str]) -> None:
    """Remove the legacy resources from requests and limits (else a second set is allocated)."""
    resources = container.get("resources")
    if not resources or not legacy:
        return
    for section in ("limits", "requests"):
        values = resources.get(section)
        if values is None:
            continue
        for name in legacy:
            values.pop(name, None)
        if not values:
            del resources[section]
    if not resources:
        del container["resources"]


def _any_nvidia(planned: list[PlannedRequest]) -> bool:
    return any(
        (d := sharing.dialect_for(r.rule.device_class_name)) is not None
        and d.driver == sharing.NVIDIA_DRIVER
        for r in planned
    )


def _claim_spec(
    planned: list[PlannedRequest], rules: SharingRules, node_selectors: tuple[str, ...]
) -> dict[str, Any]:
    requests = []
    configs: dict[str, dict[str, Any]] = {}
    for request in planned:
        dialect = sharing.dialect_for(request.rule.device_class_name)
        expressions = []
        if request.profile:
            attrs = cel.attributes(sharing.NVIDIA_DRIVER)
            expressions.append(
                f"{cel.has_key(attrs, 'profile')} && {attrs}.profile == {cel.string_literal(request.profile)}"
            )
        if request.rule.selector:
            expressions.append(request.rule.selector)
        if dialect is not None and dialect.driver == sharing.NVIDIA_DRIVER:
            expressions += node_selectors
        exactly: dict[str, Any] = {
            "deviceClassName": request.rule.device_class_name,
            "allocationMode": "ExactCount",
            "count": request.count,
        }
        if expressions:
            exactly["selectors"] = [{"cel": {"expression": e}} for e in expressions]
        requests.append({"name": request.name, "exactly": exactly})

        parameters = rules.sharing_parameters(dialect, request.rule.sharing or rules.sharing)
        if parameters is not None and dialect is not None:
            key = _canonical(parameters)
            entry = configs.setdefault(
                key,
                {"requests": [], "opaque": {"driver": dialect.driver, "parameters": parameters}},
            )
            entry["requests"].append(request.name)
    devices: dict[str, Any] = {"requests": requests}
    if configs:
        devices["config"] = list(configs.values())
    return {"devices": devices}


def _object(kind: str, name: str, namespace: str | None, spec: dict[str, Any]) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    metadata["labels"] = {MANAGED_BY_LABEL: MANAGED_BY}
    return {"apiVersion": RESOURCE_API_VERSION, "kind": kind, "metadata": metadata, "spec": spec}


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _tolerates(toleration: Mapping[str, Any], key: str) -> bool:
    if toleration.get("effect") not in (None, "", "NoSchedule"):
        return False
    if toleration.get("operator") == "Exists" and not toleration.get("key"):
        return True
    return toleration.get("key") == key


def _add_tolerations(spec: dict[str, Any], resources: list[str]) -> None:
    """What ExtendedResourceToleration did for the legacy request, which no longer triggers it."""
    tolerations = spec.get("tolerations") or []
    for resource in resources:
        if not any(_tolerates(t, resource) for t in tolerations):
            tolerations.append({"key": resource, "operator": "Exists", "effect": "NoSchedule"})
    if tolerations:
        spec["tolerations"] = tolerations


def check_shared_claim_fits(
    existing: Mapping[str, Any], wanted: Mapping[str, Any], *, max_devices: int | None = None
) -> str | None:
    """Why a pod's request does not fit an existing named claim, or None if it fits.

    The rules are in dracore.existing.shared_claim_difference.
    """
    difference = existing_objects.shared_claim_difference(existing, wanted, max_devices=max_devices)
    return f"ResourceClaim {dra.object_name(existing)} {difference}" if difference else None
