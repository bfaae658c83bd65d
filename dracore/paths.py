"""Which path serves a pod's legacy GPU request: the webhook's claim templates or the scheduler.

On the scheduler's path (KEP-5004) the pod's `nvidia.com/gpu: N` is renamed to the implicit
extended resource name of a generated DeviceClass, `deviceclass.resource.kubernetes.io/<class>`,
and the scheduler makes the claim. The class says everything the claim can say there, so only
pods that need nothing per pod qualify (`scheduler_problem`), and only where the cluster has
the class exactly as `kubectl dra classes` generates it and a server that serves the feature by
default (`ClusterOffer`). `choose_path` is the decision; `rename_for_scheduler` the rewrite.

The implicit name is used even for the class that claims `nvidia.com/gpu` in
`extendedResourceName`: a newer class claiming the name would otherwise take the pod over.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from dracore import selectors, sharing
from dracore.classes import (
    IMPLICIT_PREFIX,
    GeneratedClass,
    generate_classes,
    parse_kubernetes_version,
    serves_extended_resource_names,
)
from dracore.planning import parse_count
from dracore.policy import Policy, SharingRules
from dracore.record import SCHEDULER, TEMPLATES, WEBHOOK_ROUTE, ContainerRecord, RewrittenRecord
from dracore.translate import (
    POD_SHARING_ANNOTATION,
    REWRITTEN_ANNOTATION,
    SHARED_CLAIM_ANNOTATION,
    SKIP_ANNOTATION,
)
from dracore.translate import _tolerates as tolerates  # the template path's test, on purpose

# Read from the cluster, a class's selectors and config are compared with the generated ones;
# a class with more than this is not ours (and not worth holding in memory).
MAX_OFFERED_SELECTORS: Final = 32


@dataclass(frozen=True, slots=True)
class OfferedClass:
    """A DeviceClass in the cluster, reduced to what decides whether it is the generated one."""

    name: str
    selectors: tuple[str, ...]
    config: str  # spec.config as canonical JSON ("[]" for none)

    @classmethod
    def of(cls, device_class: Mapping[str, Any]) -> OfferedClass | None:
        """None for an object that is not a readable DeviceClass."""
        metadata = device_class.get("metadata")
        spec = device_class.get("spec") or {}
        name = metadata.get("name") if isinstance(metadata, Mapping) else None
        if not isinstance(name, str) or not isinstance(spec, Mapping):
            return None
        raw = spec.get("selectors") or []
        if not isinstance(raw, list) or len(raw) > MAX_OFFERED_SELECTORS:
            return None
        expressions = []
        for entry in raw:
            cel = entry.get("cel") if isinstance(entry, Mapping) else None
            expression = cel.get("expression") if isinstance(cel, Mapping) else None
            if not isinstance(expression, str):
                return None
            expressions.append(expression)
        return cls(name, tuple(expressions), _canonical(spec.get("config") or []))


@dataclass(frozen=True, slots=True)
class ClusterOffer:
    """What the cluster offers the scheduler's path: its release and its DeviceClasses.

    `assume_generated` stands for "every class `kubectl dra classes` generates is installed"
    (offline conversion, which has no cluster to ask).
    """

    version: tuple[int, int] | None = None
    classes: tuple[OfferedClass, ...] = ()
    assume_generated: bool = False
    # Looked up for every pod: by name, built once.
    _by_name: dict[str, OfferedClass] = field(
        init=False, repr=False, compare=False, hash=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {c.name: c for c in self.classes})

    @classmethod
    def from_cluster(
        cls, version: str | None, device_classes: Iterable[Mapping[str, Any]]
    ) -> ClusterOffer:
        """From the server's `/version` gitVersion and its listed DeviceClasses."""
        found = (OfferedClass.of(c) for c in device_classes if isinstance(c, Mapping))
        return cls(
            parse_kubernetes_version(version) if version else None,
            tuple(sorted((c for c in found if c is not None), key=lambda c: c.name)),
        )

    def named(self, name: str) -> OfferedClass | None:
        return self._by_name.get(name)

    def selectors_of(self, names: Iterable[str]) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """The selectors of the named classes that are in the cluster, by name."""
        return tuple(
            (name, offered.selectors)
            for name in sorted(set(names))
            if (offered := self._by_name.get(name)) is not None
        )


NOTHING: Final = ClusterOffer()


@dataclass(frozen=True, slots=True)
class PathChoice:
    """The path for one pod, the class per renamed resource, and why, in plain words."""

    path: str  # record.TEMPLATES or record.SCHEDULER
    reason: str
    classes: tuple[tuple[str, str], ...] = ()  # legacy resource -> DeviceClass (scheduler)
    warning: str | None = None  # for the pod's author: a Scheduler policy not followed

    @property
    def implicit_names(self) -> dict[str, str]:
        return {resource: IMPLICIT_PREFIX + name for resource, name in self.classes}


# --- which pods can take the scheduler's path --------------------------------------------------


@dataclass(frozen=True, slots=True)
class LegacyAsk:
    """One legacy resource in an app container's limits, as written."""

    index: int
    container: str
    resource: str
    value: Any


def app_container_asks(pod: Mapping[str, Any], policy: Policy) -> Iterator[LegacyAsk]:
    spec = pod.get("spec") or {}
    for index, container in enumerate(spec.get("containers") or []):
        limits = (container.get("resources") or {}).get("limits") or {}
        for resource in sorted(k for k in limits if policy.resource_rule(k) is not None):
            yield LegacyAsk(index, str(container.get("name", "")), resource, limits[resource])


def scheduler_problem(
    pod: Mapping[str, Any],
    policy: Policy,
    *,
    served: Collection[str],
    one_gpu_container: bool,
    no_gpu_node_labels: bool,
) -> str | None:
    """Why the scheduler's claim cannot serve this pod as the webhook's would; None if it can.

    `served`: the legacy resources a generated class serves here; `one_gpu_container`: the
    rules make GPU containers share (podSharing Always); `no_gpu_node_labels`: the rules turn
    GPU node labels into request selectors (nodeSelectors Translate or Keep).
    """
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    if annotations.get(SKIP_ANNOTATION) == "true":
        return f"annotation {SKIP_ANNOTATION} is true"
    if annotations.get(POD_SHARING_ANNOTATION) == "true":
        return f"annotation {POD_SHARING_ANNOTATION} asks its containers to share devices"
    if SHARED_CLAIM_ANNOTATION in annotations:
        return f"annotation {SHARED_CLAIM_ANNOTATION} shares a claim with other pods"
    spec = pod.get("spec") or {}
    containers = spec.get("containers") or []
    if not containers:
        return "it has no containers"

    def legacy(section: Mapping[str, Any]) -> list[str]:
        return [k for k in section if policy.resource_rule(k) is not None]

    def asks(container: Mapping[str, Any]) -> bool:
        resources = container.get("resources") or {}
        return bool(
            legacy(resources.get("limits") or {}) or legacy(resources.get("requests") or {})
        )

    for container in spec.get("initContainers") or []:
        if asks(container):
            return (
                f'init container "{container.get("name", "")}" asks for GPUs; the scheduler '
                "would give it devices of its own"
            )
    asking = [c for c in containers if asks(c)]
    if not asking:
        return "no app container asks for a GPU"
    if one_gpu_container and len(asking) > 1:
        return (
            f"{len(asking)} containers ask for GPUs and podSharing Always shares them, "
            "which a class cannot"
        )
    for container in containers:
        resources = container.get("resources") or {}
        limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
        name = container.get("name", "")
        for key in legacy(limits):
            count = parse_count(limits[key])
            if count is None or count < 1:
                return f'container "{name}": {key} is not a whole count of 1 or more'
            if key not in served:
                return f"no generated DeviceClass serves {key} under this namespace's rules"
        for key in legacy(requests):
            if key not in limits or requests[key] != limits[key]:
                return f'container "{name}": requests {key} without an equal limit'
    if no_gpu_node_labels and _has_gpu_node_labels(spec):
        return "GPU node labels in its node selection become request selectors (nodeSelectors)"
    return None


def _has_gpu_node_labels(spec: Mapping[str, Any]) -> bool:
    if any(k in selectors.DEVICE_LABELS for k in spec.get("nodeSelector") or {}):
        return True
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    return any(
        e.get("key") in selectors.DEVICE_LABELS
        for term in required.get("nodeSelectorTerms") or []
        for e in term.get("matchExpressions") or []
    )


# --- the generated class per resource ----------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _generated(
    policy: Policy, profile: str, known: tuple[tuple[str, tuple[str, ...]], ...]
) -> tuple[GeneratedClass, ...]:
    """What `kubectl dra classes` makes for `policy` (with one MIG profile), cached: a policy
    and an offer change rarely, pods asking for the same resource come often."""
    return generate_classes(
        policy, mig_profiles=[profile] if profile else [], class_selectors=dict(known)
    ).classes


def class_for(
    policy: Policy, rules: SharingRules, resource: str, offer: ClusterOffer
) -> GeneratedClass | None:
    """The generated class serving `resource` as `rules` share it, or None if none does."""
    match = policy.resource_rule(resource)
    if match is None:
        return None
    rule, profile = match
    wanted = rules.sharing_parameters(
        sharing.dialect_for(rule.device_class_name), rule.sharing or rules.sharing
    )
    fitting = [
        generated
        for generated in _generated(
            # Only the classes the policy names can change what is generated.
            policy,
            profile,
            offer.selectors_of(r.device_class_name for r in policy.resources),
        )
        if generated.resource == resource and _class_parameters(generated) == wanted
    ]
    return fitting[0] if len(fitting) == 1 else None


def _class_parameters(generated: GeneratedClass) -> Any:
    for entry in generated.manifest["spec"].get("config") or []:
        return entry["opaque"]["parameters"]
    return None


def _difference(generated: GeneratedClass, offered: OfferedClass) -> str | None:
    spec = generated.manifest["spec"]
    wanted = tuple(s["cel"]["expression"] for s in spec.get("selectors") or [])
    if offered.selectors != wanted:
        return "its selectors"
    if offered.config != _canonical(spec.get("config") or []):
        return "its config"
    return None


# --- the decision ------------------------------------------------------------------------------


def choose_path(
    pod: Mapping[str, Any],
    *,
    policy: Policy,
    namespace: str | None,
    namespace_labels: Mapping[str, str] | None,
    offer: ClusterOffer,
) -> PathChoice:
    """The path for a pod the policy rewrites (limits and denials are the rewrite's concern)."""
    rules = policy.rules_for(namespace or "", namespace_labels)
    resources = sorted({ask.resource for ask in app_container_asks(pod, policy)})
    wanted = {_path_of(policy, rules, r) for r in resources} or {rules.path}
    if "Templates" in wanted:
        return PathChoice(TEMPLATES, "policy path Templates")
    strict = "Scheduler" in wanted

    def templates(why: str) -> PathChoice:
        warning = (
            f"policy path Scheduler: this pod takes the template path instead, because {why}"
            if strict
            else None
        )
        return PathChoice(TEMPLATES, why, warning=warning)

    found = {r: class_for(policy, rules, r, offer) for r in resources}
    problem = scheduler_problem(
        pod,
        policy,
        served={r for r, c in found.items() if c is not None},
        one_gpu_container=rules.pod_sharing == "Always",
        no_gpu_node_labels=rules.node_selectors != "Ignore",
    )
    if problem is not None:
        return templates(problem)
    if offer.version is None:
        return templates("the server's Kubernetes version is not known (yet)")
    if not serves_extended_resource_names(offer.version):
        major, minor = offer.version
        return templates(
            f"the server is Kubernetes {major}.{minor}; the scheduler serves extended "
            "resources through DRA by default from 1.36"
        )
    chosen: list[tuple[str, str]] = []
    for resource, generated in found.items():
        if generated is None:  # a resource only in requests: scheduler_problem said so already
            return templates(f"no generated DeviceClass serves {resource}")
        if not offer.assume_generated:
            offered = offer.named(generated.name)
            if offered is None:
                return templates(f"DeviceClass {generated.name} is not in the cluster")
            difference = _difference(generated, offered)
            if difference is not None:
                return templates(
                    f"DeviceClass {generated.name} differs from the generated one in {difference}"
                )
        chosen.append((resource, generated.name))
    major, minor = offer.version
    names = ", ".join(name for _, name in chosen)
    return PathChoice(
        SCHEDULER, f"DeviceClass {names} on Kubernetes {major}.{minor}", tuple(chosen)
    )


def _path_of(policy: Policy, rules: SharingRules, resource: str) -> str:
    match = policy.resource_rule(resource)
    return (match[0].path if match is not None else None) or rules.path


# --- the rewrite -------------------------------------------------------------------------------


def rename_for_scheduler(
    pod: Mapping[str, Any],
    *,
    classes: Mapping[str, str],
    policy: Policy,
    rules: SharingRules,
    route: str = WEBHOOK_ROUTE,
) -> dict[str, Any]:
    """The pod with each legacy key of its app containers renamed to its class's implicit name,
    the toleration the template path adds, and the record (path scheduler). `classes` maps
    every legacy resource the pod asks for to its DeviceClass."""
    new = copy.deepcopy(dict(pod))
    spec = new["spec"]
    renames = {resource: IMPLICIT_PREFIX + name for resource, name in classes.items()}
    entries = [
        ContainerRecord(a.container, a.resource, int(a.value), device_class=classes[a.resource])
        for a in app_container_asks(pod, policy)
    ]
    for container in spec["containers"]:
        resources = container.get("resources") or {}
        for section in ("limits", "requests"):
            values = resources.get(section) or {}
            for resource in [k for k in values if k in renames]:
                values[renames[resource]] = values.pop(resource)
    present = sorted({e.resource for e in entries})
    added = [
        {"key": r, "operator": "Exists", "effect": "NoSchedule"}
        for r in present
        if not any(tolerates(t, r) for t in spec.get("tolerations") or [])
    ]
    if added:
        spec.setdefault("tolerations", []).extend(added)
    record = RewrittenRecord(
        policy=policy.digest,
        sharing=rules.sharing,
        containers=tuple(entries),
        path=SCHEDULER,
        route=route,
    )
    new.setdefault("metadata", {}).setdefault("annotations", {})[REWRITTEN_ANNOTATION] = (
        record.to_annotation()
    )
    return new


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
