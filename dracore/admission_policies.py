"""The GPUPolicy compiled to admission policies the API server runs itself (Kubernetes 1.36+).

Where the scheduler's extended-resource path (KEP-5004) gives a pod what the webhook would give
it, the pod only needs its legacy resource renamed to the implicit name of the generated
DeviceClass carrying its namespace's sharing (`deviceclass.resource.kubernetes.io/<class>`,
see dracore.classes). A MutatingAdmissionPolicy does that inside the API server, with no
network hop; a ValidatingAdmissionPolicy holds the policy's `maxGPUsPerPod` on every pod that
names one of the policy's classes, which pods can also write by hand.

`compile_route(policy, classes)` returns an `InProcessRoute`: its `manifests` (one mutating and
one validating policy per namespace rule, bound to the namespaces the rule selects), and the
same decisions as Python (`handles`, `apply`, `denial`) so that tests compare the compiled route
with the webhook's rewrite. Everything the route does not handle keeps its legacy resource and
reaches the webhook, which the API server calls after the mutating policies:
`webhook_match_conditions` says why that is already the exact complement.

Nothing a pod author writes is evaluated or pasted into CEL: resource, class, label and namespace
names from the policy enter expressions only as literals made by `cel.string_literal`; values
from the pod are only compared, matched against fixed patterns, or copied as data.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from dracore import cel, selectors, sharing
from dracore.classes import ClassSet, GeneratedClass, implicit_resource_name
from dracore.jsonio import canonical_ascii
from dracore.policy import MAX_DEVICES_PER_CLAIM, Policy, SharingRules
from dracore.record import ContainerRecord, RewrittenRecord
from dracore.translate import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    POD_SHARING_ANNOTATION,
    REWRITTEN_ANNOTATION,
    SHARED_CLAIM_ANNOTATION,
    SKIP_ANNOTATION,
)
from dracore.translate import _tolerates as tolerates  # the webhook's test, shared on purpose

API_VERSION: Final = "admissionregistration.k8s.io/v1"
# Servers that serve MutatingAdmissionPolicy v1 without a feature gate.
IN_PROCESS_FROM: Final = (1, 36)
NAME_LABEL: Final = "kubernetes.io/metadata.name"
# Namespaces labelled so are left alone by the webhook's registration; so they are here.
IGNORE_LABEL: Final = "kubectl-dra.io/ignore"
WEBHOOK_NAMESPACE: Final = "kubectl-dra"
# JSONPatch needs an index per container; CEL has no enumerate, so the indices are a literal
# list. A pod with more app containers than this goes to the webhook.
INDEXED_CONTAINERS: Final = 32
# A count the route handles: what the API server's canonical form of 1..99 looks like.
_COUNT_PATTERN: Final = "^[1-9][0-9]?$"
_COUNT = re.compile(_COUNT_PATTERN)
_DNS_LABEL_PATTERN: Final = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_DNS_LABEL = re.compile(_DNS_LABEL_PATTERN)
INT64_MAX: Final = 2**63 - 1


def serves_admission_policies(version: tuple[int, int]) -> bool:
    """Whether this release serves MutatingAdmissionPolicy v1, always on (GA in 1.36)."""
    return version >= IN_PROCESS_FROM


@dataclass(frozen=True, slots=True)
class Scope:
    """One namespace rule of the policy (or its defaults), as the route binds it."""

    key: str  # "defaults" or "namespaces-<i>"
    rules: SharingRules
    names: tuple[str, ...]  # namespaces selected by name (earlier rules' names removed)
    labels: tuple[tuple[str, str], ...]  # namespaces carrying all of these, unless named earlier
    left_out: tuple[str, ...]  # names a labels binding or the defaults binding must skip
    earlier_labels: tuple[tuple[tuple[str, str], ...], ...]  # label rules that win over it
    renames: tuple[tuple[str, str], ...]  # legacy resource -> implicit name, by resource


@dataclass(frozen=True, slots=True)
class Limits:
    """What the webhook needs of a pod in some namespaces, strictest over the rules that may
    apply there when only the namespace's name is known."""

    max_devices: int
    one_gpu_container: bool  # podSharing Always: containers share, which classes cannot
    no_gpu_node_labels: bool  # nodeSelectors Translate/Keep: labels become CEL on the request


@dataclass(frozen=True, slots=True)
class InProcessRoute:
    policy: Policy
    scopes: tuple[Scope, ...]
    names: tuple[str, ...]  # the legacy resources with a class in every scope
    guarded: tuple[str, ...]  # implicit names whose devices count against maxGPUsPerPod
    limits_by_name: tuple[tuple[tuple[str, ...], Limits], ...]
    limits_elsewhere: Limits
    excluded: tuple[str, ...]  # exempt namespaces and the webhook's own
    notes: tuple[str, ...]
    manifests: list[dict[str, Any]] = field(compare=False)

    # --- the same decisions in Python --------------------------------------------------------

    def scope_for(self, namespace: str, labels: Mapping[str, str]) -> Scope | None:
        """The scope whose policies apply in `namespace`; None where the route never applies."""
        if namespace in self.excluded or IGNORE_LABEL in labels:
            return None
        for scope in self.scopes:
            selected = (
                namespace in scope.names
                or (
                    bool(scope.labels)
                    and namespace not in scope.left_out
                    and _has_labels(labels, scope.labels)
                )
                or (scope.key == "defaults" and namespace not in scope.left_out)
            )
            if selected and not any(_has_labels(labels, e) for e in scope.earlier_labels):
                return scope
        return None

    def limits_for(self, namespace: str) -> Limits:
        for names, limits in self.limits_by_name:
            if namespace in names:
                return limits
        return self.limits_elsewhere

    def handles(
        self, pod: Mapping[str, Any], *, namespace: str, labels: Mapping[str, str] | None = None
    ) -> bool:
        """Whether the compiled mutating policy renames this pod (else it reaches the webhook)."""
        if self.policy.mode != "Enforce" or self.scope_for(namespace, labels or {}) is None:
            return False
        return _handled_shape(self, pod, self.limits_for(namespace))

    def apply(
        self, pod: Mapping[str, Any], *, namespace: str, labels: Mapping[str, str] | None = None
    ) -> dict[str, Any] | None:
        """The pod as the compiled mutating policy leaves it; None if it does not handle it."""
        scope = self.scope_for(namespace, labels or {})
        if scope is None or not self.handles(pod, namespace=namespace, labels=labels):
            return None
        new = copy.deepcopy(dict(pod))
        spec = new["spec"]
        renames = dict(scope.renames)
        entries: list[ContainerRecord] = []
        present: set[str] = set()
        for container in spec["containers"]:
            resources = container.get("resources") or {}
            limits = resources.get("limits") or {}
            for resource in sorted(k for k in limits if k in renames):
                entries.append(ContainerRecord(container["name"], resource, int(limits[resource])))
                present.add(resource)
            for section in ("limits", "requests"):
                values = resources.get(section) or {}
                for resource in [k for k in values if k in renames]:
                    values[renames[resource]] = values.pop(resource)
        added = [
            {"key": r, "operator": "Exists", "effect": "NoSchedule"}
            for r in sorted(present)
            if not any(tolerates(t, r) for t in spec.get("tolerations") or [])
        ]
        if added:
            spec.setdefault("tolerations", []).extend(added)
        record = RewrittenRecord(
            policy=self.policy.digest, sharing=scope.rules.sharing, containers=tuple(entries)
        )
        new.setdefault("metadata", {}).setdefault("annotations", {})[REWRITTEN_ANNOTATION] = (
            record.to_annotation()
        )
        return new

    def denial(
        self, pod: Mapping[str, Any], *, namespace: str, labels: Mapping[str, str] | None = None
    ) -> str | None:
        """The message the compiled validating policy denies this pod with, or None."""
        scope = self.scope_for(namespace, labels or {})
        if scope is None or self.policy.mode != "Enforce":
            return None
        spec = pod.get("spec") or {}
        counts = [
            _quantity_count(limits[name])
            for container in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]
            for limits in [(container.get("resources") or {}).get("limits") or {}]
            for name in self.guarded
            if name in limits
        ]
        limit = scope.rules.max_gpus_per_pod
        if not counts or (max(counts) <= limit and sum(counts) <= limit):
            return None
        needed = max(counts) if max(counts) > limit else sum(counts)
        metadata = pod.get("metadata") or {}
        where = metadata.get("namespace") or namespace
        name = metadata.get("name") or (
            f"{metadata['generateName']}*" if metadata.get("generateName") else "(unnamed)"
        )
        return _limit_message(f'pod "{where}/{name}"', str(needed), limit)


def _limit_message(who: str, needed: str, limit: int) -> str:
    """dracore.translate's wording for a pod over maxGPUsPerPod."""
    return (
        f"{who} needs {needed} GPU devices in all; policy maxGPUsPerPod is {limit}; "
        "ask for fewer, or split the work across pods"
    )


def _has_labels(labels: Mapping[str, str], wanted: Iterable[tuple[str, str]]) -> bool:
    wanted = tuple(wanted)
    return bool(wanted) and all(labels.get(k) == v for k, v in wanted)


def _quantity_count(value: Any) -> int:
    text = str(value)
    return int(text) if text.isascii() and text.isdigit() and len(text) < 19 else INT64_MAX


def _handled_shape(route: InProcessRoute, pod: Mapping[str, Any], limits: Limits) -> bool:
    policy = route.policy
    metadata = pod.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    if (
        annotations.get(SKIP_ANNOTATION) == "true"
        or annotations.get(POD_SHARING_ANNOTATION) == "true"
        or SHARED_CLAIM_ANNOTATION in annotations
    ):
        return False
    spec = pod.get("spec") or {}
    containers = spec.get("containers") or []
    if not containers or len(containers) > INDEXED_CONTAINERS:
        return False

    def legacy(section: Mapping[str, Any]) -> list[str]:
        return [k for k in section if policy.resource_rule(k) is not None]

    def asks(container: Mapping[str, Any]) -> bool:
        resources = container.get("resources") or {}
        return bool(
            legacy(resources.get("limits") or {}) or legacy(resources.get("requests") or {})
        )

    if any(asks(c) for c in spec.get("initContainers") or []):
        return False
    asking = [c for c in containers if asks(c)]
    if not asking or (limits.one_gpu_container and len(asking) > 1):
        return False
    total = 0
    for container in containers:
        resources = container.get("resources") or {}
        limits_, requests = resources.get("limits") or {}, resources.get("requests") or {}
        for key in legacy(limits_):
            value = limits_[key]
            if key not in route.names or not isinstance(value, str) or not _COUNT.match(value):
                return False
            total += int(value)
        if any(k not in limits_ or requests[k] != limits_[k] for k in legacy(requests)):
            return False
    if any(not _DNS_LABEL.match(str(c.get("name", ""))) for c in asking):
        return False
    if total > limits.max_devices:
        return False
    return not (limits.no_gpu_node_labels and _has_gpu_node_labels(spec))


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


# --- compiling ---------------------------------------------------------------------------------


def compile_route(
    policy: Policy, classes: ClassSet, *, webhook_namespace: str = WEBHOOK_NAMESPACE
) -> InProcessRoute:
    """The admission policies for `policy`, given the DeviceClasses generated for it."""
    notes: list[str] = []
    if policy.mode != "Enforce":
        notes.append(
            f"policy mode is {policy.mode}: nothing is renamed in the API server; the webhook "
            "handles every pod (Audit warns what Enforce would do)"
        )
    rule_scopes = [(f"namespaces-{i}", rule) for i, rule in enumerate(policy.namespaces)]
    all_rules = [policy.defaults, *(rule.rules for _, rule in rule_scopes)]
    mappings = [_renames(policy, classes, rules) for rules in all_rules]
    names = sorted(set.intersection(*(set(m) for m in mappings)))
    for resource in sorted(set.union(*(set(m) for m in mappings)) - set(names)):
        notes.append(
            f"{resource}: no generated class for every namespace rule; left to the webhook"
        )
    excluded = tuple(sorted({*policy.exempt_namespaces, webhook_namespace}))

    scopes: list[Scope] = []
    named: set[str] = set()
    label_rules: list[tuple[tuple[str, str], ...]] = []
    for (key, rule), mapping in zip(rule_scopes, mappings[1:], strict=True):
        own = tuple(sorted(rule.names - named - set(excluded)))
        scopes.append(
            Scope(
                key,
                rule.rules,
                own,
                rule.labels,
                tuple(sorted(named | rule.names)),
                tuple(label_rules),
                tuple((n, mapping[n]) for n in names),
            )
        )
        named |= rule.names
        if rule.labels:
            label_rules.append(rule.labels)
    scopes.append(
        Scope(
            "defaults",
            policy.defaults,
            (),
            (),
            tuple(sorted(named)),
            tuple(label_rules),
            tuple((n, mappings[0][n]) for n in names),
        )
    )
    by_name, elsewhere = _limits(policy)
    guarded = sorted(
        {name for c in classes.classes if (name := c.implicit_resource_name) is not None}
        | {
            name
            for r in policy.resources
            if (name := implicit_resource_name(r.device_class_name)) is not None
        }
    )
    route = InProcessRoute(
        policy=policy,
        scopes=tuple(scopes),
        names=tuple(names),
        guarded=tuple(guarded),
        limits_by_name=by_name,
        limits_elsewhere=elsewhere,
        excluded=excluded,
        notes=tuple(notes),
        manifests=[],
    )
    if policy.mode == "Enforce":
        route.manifests.extend(_manifests(route))
    return route


def _renames(policy: Policy, classes: ClassSet, rules: SharingRules) -> dict[str, str]:
    """legacy resource -> implicit name of the one class configured as `rules` share it."""
    found: dict[str, list[str]] = {}
    for generated in classes.classes:
        implicit = generated.implicit_resource_name
        match = policy.resource_rule(generated.resource)
        if implicit is None or match is None:
            continue
        rule = match[0]
        if _config(generated) == _wanted_config(rule.device_class_name, rule.sharing, rules):
            found.setdefault(generated.resource, []).append(implicit)
    # Two classes that fit (a resource listed exactly and through a prefix) is left to the
    # webhook, which knows which rule wins.
    return {resource: names[0] for resource, names in found.items() if len(names) == 1}


def _config(generated: GeneratedClass) -> Any:
    configs = generated.manifest["spec"].get("config") or []
    return configs[0]["opaque"]["parameters"] if configs else None


def _wanted_config(device_class: str, rule_sharing: str | None, rules: SharingRules) -> Any:
    mode = rule_sharing or rules.sharing
    dialect = sharing.dialect_for(device_class)
    if mode == "Exclusive" or dialect is None:
        return None
    return sharing.sharing_parameters(
        dialect,
        mode,
        interval=rules.time_slicing_interval,
        active_thread_percentage=rules.mps.default_active_thread_percentage,
        pinned_memory_limit=rules.mps.default_pinned_device_memory_limit,
    )


def _limits(
    policy: Policy,
) -> tuple[tuple[tuple[tuple[str, ...], Limits], ...], Limits]:
    """Per group of namespace names, the strictest rules that may apply there.

    The mutating policies could read the namespace's labels, but the webhook's registration
    cannot; the route decides on the namespace's name alone so the two always agree.
    """

    def strictest(candidates: Sequence[SharingRules]) -> Limits:
        return Limits(
            min(min(r.max_gpus_per_pod for r in candidates), MAX_DEVICES_PER_CLAIM),
            any(r.pod_sharing == "Always" for r in candidates),
            any(r.node_selectors != "Ignore" for r in candidates),
        )

    groups: list[tuple[tuple[str, ...], Limits]] = []
    named: set[str] = set()
    label_rules: list[SharingRules] = []
    for rule in policy.namespaces:
        own = tuple(sorted(rule.names - named))
        if own:
            groups.append((own, strictest([*label_rules, rule.rules])))
        named |= rule.names
        if rule.labels:
            label_rules.append(rule.rules)
    return tuple(groups), strictest([*label_rules, policy.defaults])


# --- CEL ---------------------------------------------------------------------------------------


def _pointer(*parts: str) -> str:
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


def legacy_predicate(policy: Policy, variable: str = "k") -> str:
    """CEL, true when the resource name in `variable` is one the policy replaces."""
    exact = sorted({r.name for r in policy.resources if not r.is_wildcard})
    prefixes = sorted({r.name[:-1] for r in policy.resources if r.is_wildcard})
    parts = [f"{variable} in {cel.string_list(exact)}"] if exact else []
    parts += [
        f"({variable}.startsWith({cel.string_literal(p)}) && {variable} != {cel.string_literal(p)})"
        for p in prefixes
    ]
    return " || ".join(parts) or "false"


def _asks(policy: Policy, c: str) -> str:
    legacy = legacy_predicate(policy)
    return (
        f"has({c}.resources) && ((has({c}.resources.limits) && {c}.resources.limits.exists(k, "
        f"{legacy})) || (has({c}.resources.requests) && {c}.resources.requests.exists(k, {legacy})))"
    )


def asks_for_legacy_resources(policy: Policy) -> str:
    """CEL on `object`: some container (app or init) still asks for a legacy resource."""
    asks = _asks(policy, "c")
    return (
        f"(has(object.spec.containers) && object.spec.containers.exists(c, {asks})) || "
        f"(has(object.spec.initContainers) && object.spec.initContainers.exists(c, {asks}))"
    )


def webhook_match_conditions(policy: Policy) -> list[dict[str, str]]:
    """The matchConditions that send the webhook exactly the pods the route leaves to it.

    The API server runs the mutating admission policies before any mutating webhook, and the
    webhook's conditions see the object as the policies left it. A pod the route handled asks
    for no legacy resource any more; every other pod still does. So the condition the webhook's
    registration already carries ("asks for a legacy resource") is the complement, with no
    copy of the route's rules that could drift from them, and a mutating policy that fails
    (failurePolicy Ignore) leaves the pod to the webhook instead of to nobody. On UPDATE the
    webhook still needs the pods the route rewrote: they carry the same record annotation.
    """
    return [
        {"name": "asks-for-legacy-gpu-resources", "expression": asks_for_legacy_resources(policy)}
    ]


def _namespace_choice(route: InProcessRoute, value: str, pick: Any) -> str:
    """`request.namespace in [...] ? <a> : ... : <elsewhere>` for one field of Limits."""
    expression = str(pick(route.limits_elsewhere))
    for names, limits in reversed(route.limits_by_name):
        if pick(limits) != pick(route.limits_elsewhere):
            expression = f"({value} in {cel.string_list(names)} ? {pick(limits)} : {expression})"
    return expression


def _cel_bool(value: bool) -> str:
    return "true" if value else "false"


def handled_conditions(route: InProcessRoute) -> list[dict[str, str]]:
    """The matchConditions of every mutating policy: the pods whose rewrite the scheduler's
    path reproduces. All must hold; each reads only `object` and `request.namespace`."""
    policy = route.policy
    asks = _asks(policy, "c")
    legacy = legacy_predicate(policy)
    names = cel.string_list(route.names)
    containers = "object.spec.containers"
    annotations = "object.metadata.annotations"
    skip, pod_sharing, shared = (
        cel.string_literal(a)
        for a in (SKIP_ANNOTATION, POD_SHARING_ANNOTATION, SHARED_CLAIM_ANNOTATION)
    )
    count = (
        " + ".join(
            f"({n} in c.resources.limits && c.resources.limits[{n}].matches({cel.string_literal(_COUNT_PATTERN)}) "
            f"? int(c.resources.limits[{n}]) : 0)"
            for n in (cel.string_literal(r) for r in route.names)
        )
        or "0"
    )
    conditions = {
        "asks-in-app-containers-only": (
            f"has({containers}) && {containers}.exists(c, {asks}) && "
            f"!(has(object.spec.initContainers) && object.spec.initContainers.exists(c, {asks}))"
        ),
        "no-routing-annotations": (
            f"!has({annotations}) || (!({skip} in {annotations} && {annotations}[{skip}] == 'true') && "
            f"!({pod_sharing} in {annotations} && {annotations}[{pod_sharing}] == 'true') && "
            f"!({shared} in {annotations}))"
        ),
        "whole-counts-of-classed-resources": (
            f"{containers}.all(c, !has(c.resources) || ((!has(c.resources.limits) || "
            f"c.resources.limits.all(k, !({legacy}) || (k in {names} && "
            f"c.resources.limits[k].matches({cel.string_literal(_COUNT_PATTERN)})))) && "
            "(!has(c.resources.requests) || c.resources.requests.all(k, "
            f"!({legacy}) || (has(c.resources.limits) && k in c.resources.limits && "
            "c.resources.limits[k] == c.resources.requests[k])))))"
        ),
        "container-names-are-labels": (
            f"{containers}.all(c, !({asks}) || c.name.matches({cel.string_literal(_DNS_LABEL_PATTERN)}))"
        ),
        "containers-indexed": f"size({containers}) <= {INDEXED_CONTAINERS}",
        "within-max-gpus-per-pod": (
            f"{containers}.map(c, has(c.resources) && has(c.resources.limits) ? {count} : 0).sum() "
            f"<= {_namespace_choice(route, 'request.namespace', lambda lim: lim.max_devices)}"
        ),
    }
    single = _namespace_choice(
        route, "request.namespace", lambda lim: _cel_bool(lim.one_gpu_container)
    )
    if single != "false":
        conditions["one-gpu-container-where-pods-share"] = _only_if(
            single, f"size({containers}.filter(c, {asks})) <= 1"
        )
    gfd = _namespace_choice(
        route, "request.namespace", lambda lim: _cel_bool(lim.no_gpu_node_labels)
    )
    if gfd != "false":
        labels = cel.string_list(sorted(selectors.DEVICE_LABELS))
        required = (
            "object.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
        )
        conditions["no-gpu-node-labels-to-translate"] = _only_if(
            gfd,
            "!(has(object.spec.nodeSelector) && "
            f"object.spec.nodeSelector.exists(k, k in {labels})) && "
            "!(has(object.spec.affinity) && has(object.spec.affinity.nodeAffinity) && "
            f"has({required}) && has({required}.nodeSelectorTerms) && "
            f"{required}.nodeSelectorTerms.exists(t, has(t.matchExpressions) && "
            f"t.matchExpressions.exists(e, e.key in {labels})))",
        )
    return [{"name": k, "expression": v} for k, v in conditions.items()]


def _only_if(guard: str, expression: str) -> str:
    """`expression` where `guard` holds (a CEL bool, maybe the literal true)."""
    return expression if guard == "true" else f"!({guard}) || ({expression})"


def _earlier_rule(scope: Scope) -> str:
    """CEL: the namespace carries the labels of an earlier rule, which wins (first rule wins).

    Read in variables, not matchConditions: the API server gives matchConditions no namespace.
    """
    labels = "namespaceObject.metadata.labels"
    parts = [
        "("
        + " && ".join(
            f"{cel.string_literal(k)} in {labels} && "
            f"{labels}[{cel.string_literal(k)}] == {cel.string_literal(v)}"
            for k, v in earlier
        )
        + ")"
        for earlier in scope.earlier_labels
    ]
    if not parts:
        return "false"
    return f"has(namespaceObject.metadata) && has({labels}) && ({' || '.join(parts)})"


def _mutation(route: InProcessRoute, scope: Scope) -> str:
    """The JSONPatch expression: renames, tolerations, the record annotation."""
    ops: list[str] = []
    for section in ("limits", "requests"):
        for resource, implicit in scope.renames:
            res = "object.spec.containers[i].resources"
            ops.append(
                f"variables.indices.filter(i, has({res}) && has({res}.{section}) && "
                f"{cel.string_literal(resource)} in {res}.{section}).map(i, JSONPatch{{op: 'move', "
                f"from: '/spec/containers/' + string(i) + {cel.string_literal(_pointer('resources', section, resource))}, "
                f"path: '/spec/containers/' + string(i) + {cel.string_literal(_pointer('resources', section, implicit))}}})"
            )
    ops.append(
        "!has(object.spec.tolerations) ? (size(variables.tolerations) == 0 ? [] : "
        "[JSONPatch{op: 'add', path: '/spec/tolerations', value: variables.tolerations}]) : "
        "variables.tolerations.map(t, JSONPatch{op: 'add', path: '/spec/tolerations/-', value: t})"
    )
    key = cel.string_literal(REWRITTEN_ANNOTATION)
    ops.append(
        "has(object.metadata.annotations) ? [JSONPatch{op: 'add', path: "
        f"{cel.string_literal(_pointer('metadata', 'annotations', REWRITTEN_ANNOTATION))}, "
        "value: variables.record}] : [JSONPatch{op: 'add', path: '/metadata/annotations', "
        f"value: {{{key}: variables.record}}}}]"
    )
    return "variables.earlierRule ? [] : (\n" + " +\n".join(f"({op})" for op in ops) + ")"


def _variables(route: InProcessRoute, scope: Scope) -> list[dict[str, str]]:
    indices = ", ".join(str(i) for i in range(INDEXED_CONTAINERS))
    tolerations = []
    for resource in route.names:
        literal = cel.string_literal(resource)
        present = (
            "object.spec.containers.exists(c, has(c.resources) && has(c.resources.limits) && "
            f"{literal} in c.resources.limits)"
        )
        tolerated = (
            "has(object.spec.tolerations) && object.spec.tolerations.exists(t, "
            "(!has(t.effect) || t.effect == '' || t.effect == 'NoSchedule') && "
            "((has(t.operator) && t.operator == 'Exists' && (!has(t.key) || t.key == '')) || "
            f"(has(t.key) && t.key == {literal})))"
        )
        tolerations.append(
            f"({present} && !({tolerated}) ? [{{'key': {literal}, "
            "'operator': 'Exists', 'effect': 'NoSchedule'}] : [])"
        )
    pairs = ", ".join(
        f"[{cel.string_literal(r)}, {cel.string_literal(canonical_ascii(r))}]" for r in route.names
    )
    entry = (
        '\'{"container":"\' + c.name + \'","count":\' + c.resources.limits[p[0]] + '
        "',\"resource\":' + p[1] + '}'"
    )
    containers = (
        f"object.spec.containers.map(c, has(c.resources) && has(c.resources.limits) ? "
        f"[{pairs}].filter(p, p[0] in c.resources.limits).map(p, {entry}).join(',') : '')"
        ".filter(s, s != '').join(',')"
    )
    head = "{" + '"containers":['
    tail = (
        '],"policy":'
        + canonical_ascii(route.policy.digest)
        + ',"sharing":'
        + canonical_ascii(scope.rules.sharing)
        + ',"version":1}'
    )
    record = f"{cel.string_literal(head)} + {containers} + {cel.string_literal(tail)}"
    return [
        {"name": "earlierRule", "expression": _earlier_rule(scope)},
        {
            "name": "indices",
            "expression": f"[{indices}].filter(i, i < size(object.spec.containers))",
        },
        {"name": "tolerations", "expression": " + ".join(tolerations) or "[]"},
        {"name": "record", "expression": record},
    ]


def _validation(route: InProcessRoute, scope: Scope) -> dict[str, Any]:
    guarded = cel.string_list(route.guarded)
    count = (
        "quantity(c.resources.limits[n]).isInteger() ? "
        f"quantity(c.resources.limits[n]).asInteger() : {INT64_MAX}"
    )
    limit = scope.rules.max_gpus_per_pod
    variables = [
        {"name": "earlierRule", "expression": _earlier_rule(scope)},
        {
            "name": "containers",
            "expression": "(has(object.spec.containers) ? object.spec.containers : []) + "
            "(has(object.spec.initContainers) ? object.spec.initContainers : [])",
        },
        {
            "name": "counts",
            "expression": "variables.containers.map(c, has(c.resources) && has(c.resources.limits) ? "
            f"{guarded}.filter(n, n in c.resources.limits).map(n, {count}) : [])",
        },
        {
            "name": "largest",
            "expression": "variables.counts.map(l, size(l) == 0 ? 0 : l.max()).max()",
        },
        {
            "name": "total",
            "expression": "variables.counts.map(l, size(l) == 0 ? 0 : l.sum()).sum()",
        },
    ]
    who = (
        "'pod \"' + (has(object.metadata.namespace) && object.metadata.namespace != '' ? "
        "object.metadata.namespace : request.namespace) + '/' + "
        "(has(object.metadata.name) && object.metadata.name != '' ? object.metadata.name : "
        "(has(object.metadata.generateName) && object.metadata.generateName != '' ? "
        "object.metadata.generateName + '*' : '(unnamed)')) + '\"'"
    )
    needed = f"string(variables.largest > {limit} ? variables.largest : variables.total)"
    tail = _limit_message("X", "N", limit).removeprefix("X needs N")
    asks = f"has(c.resources) && has(c.resources.limits) && {guarded}.exists(n, n in c.resources.limits)"
    return {
        "matchConditions": [
            {
                "name": "asks-for-a-policy-class-by-name",
                "expression": f"(has(object.spec.containers) && object.spec.containers.exists(c, {asks})) || "
                f"(has(object.spec.initContainers) && object.spec.initContainers.exists(c, {asks}))",
            },
        ],
        "variables": variables,
        "validations": [
            {
                "expression": f"variables.earlierRule || (variables.largest <= {limit} && "
                f"variables.total <= {limit})",
                "messageExpression": f"{who} + ' needs ' + {needed} + {cel.string_literal(tail)}",
                "reason": "Forbidden",
            }
        ],
    }


_POD_RULES: Final = [
    {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}
]


def _metadata(name: str) -> dict[str, Any]:
    return {"name": name, "labels": {MANAGED_BY_LABEL: MANAGED_BY}}


def _selectors(route: InProcessRoute, scope: Scope) -> list[tuple[str, dict[str, Any]]]:
    """(suffix, namespaceSelector) of the bindings that put `scope` in force."""
    ignore = {"key": IGNORE_LABEL, "operator": "DoesNotExist"}

    def not_in(names: Iterable[str]) -> list[dict[str, Any]]:
        values = sorted(set(names))
        return [{"key": NAME_LABEL, "operator": "NotIn", "values": values}] if values else []

    found: list[tuple[str, dict[str, Any]]] = []
    if scope.names:
        found.append(
            (
                "names",
                {
                    "matchExpressions": [
                        {"key": NAME_LABEL, "operator": "In", "values": list(scope.names)},
                        ignore,
                    ]
                },
            )
        )
    if scope.labels:
        found.append(
            (
                "labels",
                {
                    "matchLabels": dict(scope.labels),
                    "matchExpressions": [*not_in([*route.excluded, *scope.left_out]), ignore],
                },
            )
        )
    if scope.key == "defaults":
        found.append(
            ("", {"matchExpressions": [*not_in([*route.excluded, *scope.left_out]), ignore]})
        )
    return found


def _manifests(route: InProcessRoute) -> list[dict[str, Any]]:
    manifests: list[dict[str, Any]] = []
    handled = handled_conditions(route)
    for scope in route.scopes:
        bindings = _selectors(route, scope)
        if not bindings:
            continue  # every namespace it names is exempt or named by an earlier rule
        rename = f"kubectl-dra-rename-{scope.key}"
        limits = f"kubectl-dra-limits-{scope.key}"
        manifests.append(
            {
                "apiVersion": API_VERSION,
                "kind": "MutatingAdmissionPolicy",
                "metadata": _metadata(rename),
                "spec": {
                    "matchConstraints": {"resourceRules": _POD_RULES},
                    "matchConditions": handled,
                    "variables": _variables(route, scope),
                    "mutations": [
                        {
                            "patchType": "JSONPatch",
                            "jsonPatch": {"expression": _mutation(route, scope)},
                        }
                    ],
                    # A policy that fails leaves the pod as it was: the webhook then rewrites it.
                    "failurePolicy": "Ignore",
                    "reinvocationPolicy": "Never",
                },
            }
        )
        manifests.append(
            {
                "apiVersion": API_VERSION,
                "kind": "ValidatingAdmissionPolicy",
                "metadata": _metadata(limits),
                "spec": {
                    "matchConstraints": {"resourceRules": _POD_RULES},
                    "failurePolicy": "Fail",
                    **_validation(route, scope),
                },
            }
        )
        for suffix, selector in bindings:
            for kind, policy_name, extra in (
                ("MutatingAdmissionPolicyBinding", rename, {}),
                ("ValidatingAdmissionPolicyBinding", limits, {"validationActions": ["Deny"]}),
            ):
                manifests.append(
                    {
                        "apiVersion": API_VERSION,
                        "kind": kind,
                        "metadata": _metadata(f"{policy_name}-{suffix}" if suffix else policy_name),
                        "spec": {
                            "policyName": policy_name,
                            "matchResources": {"namespaceSelector": selector},
                            **extra,
                        },
                    }
                )
    return manifests
