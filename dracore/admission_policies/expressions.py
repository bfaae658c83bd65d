"""The CEL of the compiled policies: matchConditions, variables, the JSONPatch, the validation.

Strings from the policy (resource, class, label and namespace names) enter only through
`cel.string_literal`; values from the pod are compared, matched against fixed patterns, or
copied as data, never evaluated.
"""

from __future__ import annotations

from typing import Any, Final

from dracore import cel, selectors
from dracore.admission_policies.route import (
    COUNT_PATTERN,
    DNS_LABEL_PATTERN,
    INDEXED_CONTAINERS,
    INT64_MAX,
    InProcessRoute,
    Scope,
    limit_message,
)
from dracore.classes import IMPLICIT_PREFIX
from dracore.jsonio import canonical_ascii
from dracore.policy import Policy
from dracore.translate import (
    POD_SHARING_ANNOTATION,
    REWRITTEN_ANNOTATION,
    SHARED_CLAIM_ANNOTATION,
    SKIP_ANNOTATION,
)

# The record (dracore.record, version 2) of a pod renamed here: the scheduler makes its claim
# from the implicit extended resource name (KEP-5004), and the compiled policy wrote it.
RECORD_VERSION: Final = 2
RECORD_PATH: Final = "scheduler"
RECORD_ROUTE: Final = "admission-policy"


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
            f"({n} in c.resources.limits && c.resources.limits[{n}].matches({cel.string_literal(COUNT_PATTERN)}) "
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
            f"c.resources.limits[k].matches({cel.string_literal(COUNT_PATTERN)})))) && "
            "(!has(c.resources.requests) || c.resources.requests.all(k, "
            f"!({legacy}) || (has(c.resources.limits) && k in c.resources.limits && "
            "c.resources.limits[k] == c.resources.requests[k])))))"
        ),
        "container-names-are-labels": (
            f"{containers}.all(c, !({asks}) || c.name.matches({cel.string_literal(DNS_LABEL_PATTERN)}))"
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


def earlier_rule(scope: Scope) -> str:
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


def mutation(route: InProcessRoute, scope: Scope) -> str:
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


def variables(route: InProcessRoute, scope: Scope) -> list[dict[str, str]]:
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
    # [legacy name, its JSON, the JSON of the class it is renamed to]
    pairs = ", ".join(
        f"[{cel.string_literal(r)}, {cel.string_literal(canonical_ascii(r))}, "
        f"{cel.string_literal(canonical_ascii(implicit.removeprefix(IMPLICIT_PREFIX)))}]"
        for r, implicit in scope.renames
    )
    entry = (
        '\'{"class":\' + p[2] + \',"container":"\' + c.name + \'","count":\' + '
        "c.resources.limits[p[0]] + ',\"resource\":' + p[1] + '}'"
    )
    containers = (
        f"object.spec.containers.map(c, has(c.resources) && has(c.resources.limits) ? "
        f"[{pairs}].filter(p, p[0] in c.resources.limits).map(p, {entry}).join(',') : '')"
        ".filter(s, s != '').join(',')"
    )
    head = "{" + '"containers":['
    tail = (
        f'],"path":{canonical_ascii(RECORD_PATH)},"policy":'
        + canonical_ascii(route.policy.digest)
        + f',"route":{canonical_ascii(RECORD_ROUTE)},"sharing":'
        + canonical_ascii(scope.rules.sharing)
        + f',"version":{RECORD_VERSION}}}'
    )
    record = f"{cel.string_literal(head)} + {containers} + {cel.string_literal(tail)}"
    return [
        {"name": "earlierRule", "expression": earlier_rule(scope)},
        {
            "name": "indices",
            "expression": f"[{indices}].filter(i, i < size(object.spec.containers))",
        },
        {"name": "tolerations", "expression": " + ".join(tolerations) or "[]"},
        {"name": "record", "expression": record},
    ]


def validation(route: InProcessRoute, scope: Scope) -> dict[str, Any]:
    guarded = cel.string_list(route.guarded)
    count = (
        "quantity(c.resources.limits[n]).isInteger() ? "
        f"quantity(c.resources.limits[n]).asInteger() : {INT64_MAX}"
    )
    limit = scope.rules.max_gpus_per_pod
    variables = [
        {"name": "earlierRule", "expression": earlier_rule(scope)},
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
    tail = limit_message("X", "N", limit).removeprefix("X needs N")
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
