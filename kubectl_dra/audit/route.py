"""The compiled admission-policy route as audit finds it: its bindings, whether they are
current, and which route each workload's pods take (pure).

A MutatingAdmissionPolicy compiled with a guard (dracore.admission_policies.guard) acts only
while the ConfigMap its binding names holds the text it was compiled from: audit rebuilds that
condition from the ConfigMap and compares it with the policy's, character for character. A
workload takes the route when a current binding exists and the compiled route's Python twin
(`InProcessRoute.handles`, the decisions the e2e tests compare with the API server) renames its
pods under the policy in force; every other workload's pods go to the webhook. MIG pods are
judged with the profiles the cluster's drivers publish, which is what the chart's installer is
given when its `migProfiles` are the cluster's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from dracore.admission_policies import compile_install
from dracore.admission_policies.guard import GUARD_CONDITION, PolicySource
from dracore.classes import published_mig_profiles
from dracore.paths import ClusterOffer, choose_path
from dracore.policy import Policy
from dracore.record import SCHEDULER
from kubectl_dra.audit.workloads import Workload

Obj = Mapping[str, Any]
ROUTE_PREFIX: Final = "kubectl-dra-rename-"
WEBHOOK: Final = "webhook"
ADMISSION_POLICY: Final = "admission-policy"


@dataclass(frozen=True, slots=True)
class RouteBinding:
    name: str  # the MutatingAdmissionPolicyBinding
    policy: str  # the MutatingAdmissionPolicy it binds
    configmap: str | None  # NS/NAME its paramRef names; None: compiled without a guard
    # True: the ConfigMap holds the text compiled from; False: it does not (or is missing, or
    # the policy is missing), so the policy steps aside; None: no guard, always acts.
    current: bool | None


def _guard(policy: Obj | None) -> str | None:
    for condition in ((policy or {}).get("spec") or {}).get("matchConditions") or []:
        if isinstance(condition, Mapping) and condition.get("name") == GUARD_CONDITION:
            return str(condition.get("expression", ""))
    return None


def _holds(expression: str, namespace: str, name: str, configmap: Obj | None) -> bool:
    """Whether `configmap` holds, under some key, the text the guard compares with."""
    data = (configmap or {}).get("data") or {}
    return any(
        isinstance(text, str)
        and PolicySource(namespace, name, str(key), text).condition()["expression"] == expression
        for key, text in data.items()
    )


def route_bindings(
    policies: Iterable[Obj],
    bindings: Iterable[Obj],
    configmap: Callable[[str, str], Obj | None],
) -> list[RouteBinding]:
    """Our MutatingAdmissionPolicyBindings (they bind a `kubectl-dra-rename-*` policy), each with
    whether it is current; `configmap(namespace, name)` reads a ConfigMap (None if missing)."""
    by_name = {str((p.get("metadata") or {}).get("name", "")): p for p in policies}
    found = []
    for binding in bindings:
        spec = binding.get("spec") or {}
        policy_name = str(spec.get("policyName", ""))
        if not policy_name.startswith(ROUTE_PREFIX):
            continue
        ref = spec.get("paramRef") or {}
        namespace, name = str(ref.get("namespace", "")), str(ref.get("name", ""))
        guard = _guard(by_name.get(policy_name))
        current: bool | None
        if policy_name not in by_name:
            current = False
        elif guard is None and not name:
            current = None
        else:
            current = guard is not None and _holds(
                guard, namespace, name, configmap(namespace, name)
            )
        found.append(
            RouteBinding(
                str((binding.get("metadata") or {}).get("name", "")),
                policy_name,
                f"{namespace}/{name}" if name else None,
                current,
            )
        )
    return sorted(found, key=lambda b: b.name)


def workload_routes(
    workloads: Sequence[Workload],
    *,
    policy: Policy,
    bindings: Sequence[RouteBinding],
    namespaces: Mapping[str, Mapping[str, str]],
    slices: Iterable[Obj],
    offer: ClusterOffer,
) -> dict[tuple[str, str, str], tuple[str, str]]:
    """(namespace, kind, name) -> the route its pods take (`admission-policy` or `webhook`) and
    the path (`scheduler`: renamed to a class the scheduler serves, or `templates`). The
    webhook's path is its own choice (dracore.paths) against the classes in the cluster."""
    route = None
    if any(b.current is not False for b in bindings):  # else every pod reaches the webhook
        route = compile_install(policy, mig_profiles=published_mig_profiles(slices)).route
    routes = {}
    for w in workloads:
        labels = namespaces.get(w.namespace) or {"kubernetes.io/metadata.name": w.namespace}
        if route is not None and route.handles(w.pod, namespace=w.namespace, labels=labels):
            routes[(w.namespace, w.kind, w.name)] = (ADMISSION_POLICY, SCHEDULER)
            continue
        choice = choose_path(
            w.pod, policy=policy, namespace=w.namespace, namespace_labels=labels, offer=offer
        )
        routes[(w.namespace, w.kind, w.name)] = (WEBHOOK, choice.path)
    return routes
