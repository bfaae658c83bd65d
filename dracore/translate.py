"""The pure core: a pod asking for `nvidia.com/gpu: N` -> a pod referencing a DRA claim.

`translate(pod, policy=..., namespace=...)` returns a new pod (the input is never modified), the
ResourceClaimTemplate or shared ResourceClaim it needs, and warnings. A pod the policy refuses
raises TranslationError with a message for its author. No Flask, click or API calls here.

Device-plugin semantics are preserved: the count comes from the limit; a sidecar and each app
container have devices of their own; a plain init container reuses the devices of the app
containers and of the sidecars listed after it (not yet started when it runs), and sees exactly
as many as it asked for (requests are split where needed).  As the scheduler counts it, a pod
needs max(apps + sidecars, max over init containers of (init + sidecars before it)) devices.
Ephemeral containers are never touched.

Longer than 500 lines: reading demands, planning requests and building the claim share the
Demand and PlannedRequest types; request planning (`_plan_requests`) is the part to move into a
module of its own, once its init-container rules settle.
"""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from dracore import cel, dra, jsonio, selectors, sharing
from dracore import existing as existing_objects
from dracore.errors import TranslationError, shown
from dracore.names import is_dns_subdomain, short_hash, to_dns_label, unique_label
from dracore.policy import MAX_DEVICES_PER_CLAIM, Policy, ResourceRule, SharingRules
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


@dataclass(frozen=True, slots=True)
class Demand:
    """One legacy resource asked for by one container."""

    kind: ContainerKind
    index: int
    container: str
    resource: str
    count: int
    rule: ResourceRule
    profile: str


@dataclass(slots=True)
class PlannedRequest:
    name: str
    resource: str
    rule: ResourceRule
    profile: str
    count: int


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


# The largest count the API server accepts for an extended resource (a Quantity as int64).
MAX_COUNT: Final = 2**63 - 1
_ASCII_DIGITS: Final = re.compile(r"[0-9]{1,19}")


def _parse_count(value: Any) -> int | None:
    """A whole number of devices: a JSON integer or a string of ASCII digits; -1: too large.

    `str.isdigit` would accept other scripts' digits ('٣'), which the API server refuses.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return None if value < 0 else (value if value <= MAX_COUNT else -1)
    if isinstance(value, str):
        if _ASCII_DIGITS.fullmatch(value):
            count = int(value)
            return count if count <= MAX_COUNT else -1
        if value.isascii() and value.isdigit():
            return -1  # 20 digits or more
    return None


def _collect_demands(spec: Mapping[str, Any], policy: Policy, who: str) -> list[Demand]:
    demands = []
    for kind, index, container in _containers(spec):
        resources = container.get("resources") or {}
        limits = resources.get("limits") or {}
        requests = resources.get("requests") or {}
        name = container.get("name", f"#{index}")
        field_base = f"spec.{_LISTS[kind]}[{index}].resources"
        for resource in sorted(set(limits) | set(requests)):
            match = policy.resource_rule(resource)
            if match is None:
                continue
            section = "limits" if resource in limits else "requests"
            raw = limits.get(resource, requests.get(resource))
            count = _parse_count(raw)
            if count is None:
                raise TranslationError(
                    f'{who}, container "{name}": {field_base}.{section}["{resource}"] is '
                    f"{shown(raw)}; it must be a whole number of devices (0 or more)"
                )
            if count < 0 or (resource in requests and _parse_count(requests[resource]) == -1):
                raise TranslationError(
                    f'{who}, container "{name}": {field_base}.{section}["{resource}"] is '
                    f"{shown(raw)}; larger than the API server accepts (at most {MAX_COUNT})"
                )
            if (
                resource in limits
                and resource in requests
                and _parse_count(requests[resource]) != count
            ):
                raise TranslationError(
                    f'{who}, container "{name}": {field_base}.requests["{resource}"] '
                    f"({shown(requests[resource])}) differs from the limit ({shown(limits[resource])}); "
                    "GPUs cannot be overcommitted, so set them equal or keep only the limit"
                )
            demands.append(Demand(kind, index, name, resource, count, *match))
    return demands


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
    demands = _collect_demands(spec, policy, who)
    warnings: list[str] = []

    by_container: dict[tuple[ContainerKind, int], list[str]] = {}
    for demand in demands:
        by_container.setdefault((demand.kind, demand.index), []).append(demand.resource)
    for kind, index, container in _containers(spec):
        _strip_legacy(container, by_container.get((kind, index), []))
    active = [d for d in demands if d.count > 0]
    _check_largest(active, rules, who)

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

    targets: dict[str, str] = {}  # claim, template or resourceClaim
    container_requests: dict[tuple[ContainerKind, int, str], tuple[str, ...]] = {}
    dropped = selectors.NodeTerms.of(spec)
    templates: tuple[dict[str, Any], ...] = ()
    claims: tuple[dict[str, Any], ...] = ()
    if active:
        # A shared claim is seen whole by every container of every pod using it.
        one_request_per_resource = pod_sharing or shared_claim is not None
        planned, references = _plan_requests(active, shared=one_request_per_resource)
        _check_limits(planned, rules, who)
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
            targets["resource_claim"] = shared_claim
        else:
            template_name = "kubectl-dra-" + short_hash(_canonical(claim_spec))
            template_spec = {
                "metadata": {"labels": {MANAGED_BY_LABEL: MANAGED_BY}},
                "spec": claim_spec,
            }
            templates = (_object("ResourceClaimTemplate", template_name, namespace, template_spec),)
            pod_claim["resourceClaimTemplateName"] = template_name
            targets["template"] = template_name
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
        targets["claim"] = claim_name
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
        **targets,
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


def _plan_requests(
    demands: list[Demand], *, shared: bool
) -> tuple[list[PlannedRequest], dict[tuple[ContainerKind, int, str], list[str]]]:
    """Decide the claim's requests and which of them each container uses, per resource."""
    planned: list[PlannedRequest] = []
    references: dict[tuple[ContainerKind, int, str], list[str]] = {}
    taken: set[str] = set()

    def new_request(base: str, demand: Demand, count: int) -> PlannedRequest:
        request = PlannedRequest(
            unique_label(base, taken), demand.resource, demand.rule, demand.profile, count
        )
        taken.add(request.name)
        planned.append(request)
        return request

    def refer(demand: Demand, name: str) -> None:
        names = references.setdefault((demand.kind, demand.index, demand.resource), [])
        if name not in names:
            names.append(name)

    def split(
        segments: list[tuple[PlannedRequest, Demand]], cuts: set[int]
    ) -> list[tuple[str, int]]:
        """Lay the requests end to end, split any that a cut falls inside (the owner keeps
        every piece), and return each piece's name with the offset where it ends."""
        ends: list[tuple[str, int]] = []
        start = 0
        for request, owner in segments:
            end = start + request.count
            bounds = [start, *sorted(c for c in cuts if start < c < end), end]
            request.count = bounds[1] - bounds[0]
            ends.append((request.name, bounds[1]))
            previous = request
            for low, high in itertools.pairwise(bounds[1:]):
                piece = new_request(request.name, owner, high - low)
                planned.remove(piece)
                planned.insert(planned.index(previous) + 1, piece)
                refer(owner, piece.name)
                ends.append((piece.name, high))
                previous = piece
            start = end
        return ends

    by_resource: dict[str, list[Demand]] = {}
    for demand in demands:
        by_resource.setdefault(demand.resource, []).append(demand)
    # A container asking for several resources names each request after the resource too.
    resources_per_container = Counter((d.kind, d.index) for d in demands)

    for resource, group in by_resource.items():
        if shared:
            request = new_request(_resource_label(resource), group[0], max(d.count for d in group))
            for demand in group:
                refer(demand, request.name)
            continue
        apps: list[tuple[PlannedRequest, Demand]] = []
        sidecars: list[tuple[PlannedRequest, Demand]] = []
        for demand in group:
            if demand.kind == "init":
                continue
            base = demand.container
            if resources_per_container[(demand.kind, demand.index)] > 1:
                base = f"{demand.container}-{_resource_label(resource)}"
            request = new_request(to_dns_label(base), demand, demand.count)
            refer(demand, request.name)
            (apps if demand.kind == "app" else sidecars).append((request, demand))
        inits = [d for d in group if d.kind == "init"]
        if not inits:
            continue
        # A plain init container runs before the app containers and before the sidecars listed
        # after it start, so it reuses their devices; only what it needs beyond them gets a
        # request of its own (shared by all init containers: they run one at a time).  With the
        # sidecars latest-first after the apps, what an init container may reuse is a prefix.
        line = apps + sidecars[::-1]
        reusable = {
            d.index: sum(r.count for r, _ in apps)
            + sum(r.count for r, s in sidecars if s.index > d.index)
            for d in inits
        }
        excess = {d.index: max(0, d.count - reusable[d.index]) for d in inits}
        extra: list[tuple[PlannedRequest, Demand]] = []
        if any(excess.values()):
            largest = max(inits, key=lambda d: excess[d.index])
            extra = [
                (
                    new_request(to_dns_label(largest.container), largest, excess[largest.index]),
                    largest,
                )
            ]
        # Cut requests where an init container's share ends, so it sees exactly its count.
        line_ends = split(line, {min(d.count, reusable[d.index]) for d in inits})
        extra_ends = split(extra, set(excess.values()))
        for demand in inits:
            for name, end in line_ends:
                if end <= min(demand.count, reusable[demand.index]):
                    refer(demand, name)
            for name, end in extra_ends:
                if end <= excess[demand.index]:
                    refer(demand, name)
    return planned, references


def _resource_label(resource: str) -> str:
    """`nvidia.com/gpu` -> `gpu`, `nvidia.com/mig-1g.10gb` -> `mig-1g-10gb`."""
    return to_dns_label(resource.split("/", 1)[-1])


def _check_largest(demands: list[Demand], rules: SharingRules, who: str) -> None:
    """Before planning: no way of sharing gives a pod fewer devices than its largest demand.

    Denying here keeps planning proportional to the pod (counts are at most 32 past this).
    """
    largest = max(demands, key=lambda d: d.count, default=None)
    if largest is not None and largest.count > min(rules.max_gpus_per_pod, MAX_DEVICES_PER_CLAIM):
        _check_limits(
            [
                PlannedRequest(
                    to_dns_label(largest.container),
                    largest.resource,
                    largest.rule,
                    largest.profile,
                    largest.count,
                )
            ],
            rules,
            who,
        )


def _check_limits(planned: list[PlannedRequest], rules: SharingRules, who: str) -> None:
    """The policy's maxGPUsPerPod first (it is what the pod's author can act on), then DRA's."""
    total = sum(r.count for r in planned)
    too_big = [r for r in planned if r.count > MAX_DEVICES_PER_CLAIM]
    dra_limit = "".join(
        f"; request {r.name} asks for {r.count} {r.resource}, and DRA allocates at most "
        f"{MAX_DEVICES_PER_CLAIM} devices per request"
        for r in too_big[:1]
    )
    limit = min(rules.max_gpus_per_pod, MAX_DEVICES_PER_CLAIM)
    if total > limit:
        source = (
            f"policy maxGPUsPerPod is {rules.max_gpus_per_pod}"
            if limit == rules.max_gpus_per_pod
            else f"DRA allocates at most {MAX_DEVICES_PER_CLAIM} devices per claim"
        )
        raise TranslationError(
            f"{who} needs {total} GPU devices in all; {source}{dra_limit}; ask for fewer, or "
            "split the work across pods"
        )


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

        strategy = request.rule.sharing or rules.sharing
        if strategy != "Exclusive" and dialect is not None:
            parameters = sharing.sharing_parameters(
                dialect,
                strategy,
                interval=rules.time_slicing_interval,
                active_thread_percentage=rules.mps.default_active_thread_percentage,
                pinned_memory_limit=rules.mps.default_pinned_device_memory_limit,
            )
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
