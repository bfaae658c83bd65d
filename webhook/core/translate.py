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
"""

from __future__ import annotations

import copy
import itertools
import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from webhook.core import cel, selectors, sharing
from webhook.core.errors import TranslationError
from webhook.core.names import is_dns_subdomain, short_hash, to_dns_label, unique_label
from webhook.core.policy import MAX_DEVICES_PER_CLAIM, Policy, ResourceRule, SharingRules

PREFIX: Final = "kubectl-dra.io/"
SKIP_ANNOTATION: Final = PREFIX + "skip"
POD_SHARING_ANNOTATION: Final = PREFIX + "pod-sharing"
SHARED_CLAIM_ANNOTATION: Final = PREFIX + "shared-claim"
REWRITTEN_ANNOTATION: Final = PREFIX + "rewritten"
MANAGED_BY_LABEL: Final = "app.kubernetes.io/managed-by"
MANAGED_BY: Final = "kubectl-dra"
RESOURCE_API_VERSION: Final = "resource.k8s.io/v1"
DEFAULT_CLAIM_NAME: Final = "gpu"

ContainerKind = Literal["app", "init", "sidecar"]
_LISTS: Final[dict[ContainerKind, str]] = {
    "app": "containers",
    "init": "initContainers",
    "sidecar": "initContainers",
}


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
    metadata = pod.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    if policy.mode == "Disabled":
        return _keep(pod, "policy mode is Disabled")
    if namespace and namespace in policy.exempt_namespaces:
        return _keep(pod, f"namespace {namespace} is exempt")
    if annotations.get(SKIP_ANNOTATION) == "true":
        return _keep(pod, f"annotation {SKIP_ANNOTATION} is true")
    if REWRITTEN_ANNOTATION in annotations:
        return _keep(pod, "already rewritten")
    spec = pod.get("spec") or {}
    if not _has_legacy_resource(spec, policy):
        return _keep(pod, "no legacy GPU resources")

    rules = policy.rules_for(namespace or "", namespace_labels)
    who = subject or _describe_pod(metadata, namespace)
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


def _describe_pod(metadata: Mapping[str, Any], namespace: str | None) -> str:
    name = metadata.get("name") or (
        metadata.get("generateName", "") + "*" if metadata.get("generateName") else ""
    )
    name = name or "(unnamed)"
    return f'pod "{namespace}/{name}"' if namespace else f'pod "{name}"'


def _summary(translation: Translation) -> str:
    record = json.loads(translation.pod["metadata"]["annotations"][REWRITTEN_ANNOTATION])
    parts = [f"{c['container']}: {c['count']} {c['resource']}" for c in record["containers"]]
    target = record.get("template") or record.get("resourceClaim") or "no claim"
    return f"{', '.join(parts) or 'nothing'} -> claim {record.get('claim')} ({target}), {record['sharing']}"


# --- reading the legacy request --------------------------------------------------------------


def _containers(spec: Mapping[str, Any]) -> list[tuple[ContainerKind, int, dict[str, Any]]]:
    found: list[tuple[ContainerKind, int, dict[str, Any]]] = []
    for i, c in enumerate(spec.get("initContainers") or []):
        found.append(("sidecar" if c.get("restartPolicy") == "Always" else "init", i, c))
    for i, c in enumerate(spec.get("containers") or []):
        found.append(("app", i, c))
    return found


def _has_legacy_resource(spec: Mapping[str, Any], policy: Policy) -> bool:
    for _, _, container in _containers(spec):
        resources = container.get("resources") or {}
        for section in ("limits", "requests"):
            if any(policy.resource_rule(k) for k in resources.get(section) or {}):
                return True
    return False


def _parse_count(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str) and value.isdigit():
        return int(value)
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
                    f"{json.dumps(raw)}; it must be a whole number of devices (0 or more)"
                )
            if (
                resource in limits
                and resource in requests
                and _parse_count(requests[resource]) != count
            ):
                raise TranslationError(
                    f'{who}, container "{name}": {field_base}.requests["{resource}"] '
                    f"({json.dumps(requests[resource])}) differs from the limit ({json.dumps(limits[resource])}); "
                    "GPUs cannot be overcommitted, so set them equal or keep only the limit"
                )
            demands.append(Demand(kind, index, name, resource, count, *match))
    return demands


# --- the rewrite ------------------------------------------------------------------------------


def _rewrite(
    pod: Mapping[str, Any],
    *,
    policy: Policy,
    rules: SharingRules,
    namespace: str | None,
    who: str,
) -> Translation:
    new_pod = copy.deepcopy(dict(pod))
    spec = new_pod.setdefault("spec", {})
    metadata = new_pod.setdefault("metadata", {})
    annotations = metadata.get("annotations") or {}
    demands = _collect_demands(spec, policy, who)
    warnings: list[str] = []

    for kind, index, container in _containers(spec):
        _strip_legacy(
            container, [d.resource for d in demands if d.kind == kind and d.index == index]
        )
    active = [d for d in demands if d.count > 0]

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
                f"{who}: annotation {SHARED_CLAIM_ANNOTATION}={json.dumps(shared_claim)} is not a "
                "valid ResourceClaim name (lower-case letters, digits, '-' and '.')"
            )

    record: dict[str, Any] = {
        "policy": policy.digest,
        "sharing": rules.sharing,
        "containers": [
            {"container": d.container, "resource": d.resource, "count": d.count} for d in demands
        ],
    }
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
        )
        warnings += node.warnings
        claim_spec = _claim_spec(planned, rules, node.selectors)
        claim_name = unique_label(
            DEFAULT_CLAIM_NAME, {c.get("name") for c in spec.get("resourceClaims") or []}
        )
        pod_claim: dict[str, Any] = {"name": claim_name}
        if shared_claim is not None:
            pod_claim["resourceClaimName"] = shared_claim
            claims = (_object("ResourceClaim", shared_claim, namespace, claim_spec),)
            record["resourceClaim"] = shared_claim
        else:
            template_name = "kubectl-dra-" + short_hash(_canonical(claim_spec))
            template_spec = {
                "metadata": {"labels": {MANAGED_BY_LABEL: MANAGED_BY}},
                "spec": claim_spec,
            }
            templates = (_object("ResourceClaimTemplate", template_name, namespace, template_spec),)
            pod_claim["resourceClaimTemplateName"] = template_name
            record["template"] = template_name
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
        record["claim"] = claim_name
        for container_record, demand in zip(record["containers"], demands, strict=True):
            if demand.count > 0 and shared_claim is None:
                container_record["requests"] = references[
                    (demand.kind, demand.index, demand.resource)
                ]
        _add_tolerations(spec, sorted({d.resource for d in active}))

    metadata.setdefault("annotations", {})[REWRITTEN_ANNOTATION] = json.dumps(
        record, sort_keys=True, separators=(",", ":")
    )
    return Translation(
        pod=new_pod,
        changed=True,
        reason="rewritten",
        templates=templates,
        shared_claims=claims,
        warnings=tuple(warnings),
    )


def restore_rewritten(
    old: Mapping[str, Any], new: Mapping[str, Any], *, policy: Policy
) -> dict[str, Any]:
    """On UPDATE of a pod we rewrote, take back what a re-apply of its manifest adds again.

    `kubectl apply` of the unchanged legacy manifest patches `nvidia.com/gpu` (and translated
    node labels) back into the live pod, and the API server forbids that update. Those fields
    are immutable on pods, so restoring the live values can only turn a forbidden update into
    an allowed one; pods we did not rewrite are returned as they are.
    """
    if REWRITTEN_ANNOTATION not in ((old.get("metadata") or {}).get("annotations") or {}):
        return dict(new)
    result = copy.deepcopy(dict(new))
    spec = result.setdefault("spec", {})
    old_spec = old.get("spec") or {}
    before = {(_LISTS[kind], c.get("name")): c for kind, _, c in _containers(old_spec)}
    for kind, _, container in _containers(spec):
        old_resources = (before.get((_LISTS[kind], container.get("name"))) or {}).get(
            "resources"
        ) or {}
        had = {k for section in ("limits", "requests") for k in old_resources.get(section) or {}}
        resources = container.get("resources") or {}
        present = {k for section in ("limits", "requests") for k in resources.get(section) or {}}
        _strip_legacy(container, [k for k in present - had if policy.resource_rule(k)])
    for key in ("nodeSelector", "affinity"):
        if key in old_spec:
            spec[key] = copy.deepcopy(old_spec[key])
        else:
            spec.pop(key, None)
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


def _check_limits(planned: list[PlannedRequest], rules: SharingRules, who: str) -> None:
    total = sum(r.count for r in planned)
    for request in planned:
        if request.count > MAX_DEVICES_PER_CLAIM:
            raise TranslationError(
                f"{who}: request {request.name} asks for {request.count} {request.resource}; "
                f"DRA allocates at most {MAX_DEVICES_PER_CLAIM} devices per request"
            )
    limit = min(rules.max_gpus_per_pod, MAX_DEVICES_PER_CLAIM)
    if total > limit:
        source = (
            f"policy maxGPUsPerPod is {rules.max_gpus_per_pod}"
            if limit == rules.max_gpus_per_pod
            else f"DRA allocates at most {MAX_DEVICES_PER_CLAIM} devices per claim"
        )
        raise TranslationError(
            f"{who} needs {total} GPU devices in all; {source}; ask for fewer, or split the work "
            "across pods"
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


def check_shared_claim_fits(existing: Mapping[str, Any], wanted: Mapping[str, Any]) -> str | None:
    """Why a pod's request does not fit an existing named claim, or None if it fits.

    For each DeviceClass the pod needs, the claim must ask for at least as many devices of it.
    """

    def per_class(claim: Mapping[str, Any]) -> dict[str, float]:
        totals: dict[str, float] = {}
        for request in ((claim.get("spec") or {}).get("devices") or {}).get("requests") or []:
            exactly = request.get("exactly") or request  # v1beta1 kept the fields on the request
            for option in request.get("firstAvailable") or [exactly]:
                device_class = option.get("deviceClassName")
                if not device_class:
                    continue
                count = (
                    float("inf")
                    if option.get("allocationMode") == "All"
                    else option.get("count", 1)
                )
                totals[device_class] = totals.get(device_class, 0) + count
        return totals

    have = per_class(existing)
    name = (existing.get("metadata") or {}).get("name", "")
    for device_class, need in per_class(wanted).items():
        got = have.get(device_class, 0)
        if got == 0:
            offered = ", ".join(sorted(have)) or "nothing"
            return f"ResourceClaim {name} offers devices of class {offered}, not {device_class}"
        if got < need:
            return f"ResourceClaim {name} holds {int(got)} device(s) of class {device_class}; this pod needs {need}"
    return None
