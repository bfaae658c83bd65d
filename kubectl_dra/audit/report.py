"""`kubectl dra audit` from listed objects to one report (pure), and the lists it needs.

`read_cluster` makes a constant number of list calls (one per workload kind, plus namespaces,
nodes, ResourceSlices, DeviceClasses, ResourceClaims, webhook configurations, and the policy
ConfigMap), however many objects exist; `build_audit` joins them in memory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from dracore.demand import plugin_held_gpus
from dracore.paths import ClusterOffer
from dracore.policy import Policy
from kubectl_dra.audit.decide import WorkloadAudit, decide_all, namespace_labels
from kubectl_dra.audit.readiness import (
    DemandCapacity,
    Finding,
    ModelCapacity,
    allocated_devices,
    demand_capacity,
    findings,
    model_capacity,
)
from kubectl_dra.audit.registrations import registrations
from kubectl_dra.audit.route import RouteBinding, route_bindings, workload_routes
from kubectl_dra.audit.workloads import WORKLOAD_KINDS, find_workloads
from kubectl_dra.celcheck.matching import DeviceMatcher
from kubectl_dra.errors import KubeError

Obj = Mapping[str, Any]


class AuditReader(Protocol):
    """What audit reads; kubectl_dra.kube.KubeGateway implements it."""

    def list_workloads(self, kind: str, namespace: str | None) -> list[dict[str, Any]]: ...
    def list_pods(
        self, namespace: str | None, *, label_selector: str | None = None
    ) -> list[dict[str, Any]]: ...
    def list_namespaces(self) -> list[dict[str, Any]]: ...
    def list_nodes(self) -> list[dict[str, Any]]: ...
    def list_resource_slices(self) -> list[dict[str, Any]]: ...
    def list_device_classes(self) -> list[dict[str, Any]]: ...
    def list_resource_claims(self, namespace: str | None) -> list[dict[str, Any]]: ...
    def list_mutating_webhook_configurations(self) -> list[dict[str, Any]]: ...
    def list_mutating_admission_policies(self) -> list[dict[str, Any]]: ...
    def list_mutating_admission_policy_bindings(self) -> list[dict[str, Any]]: ...
    def get_config_map(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    def server_version(self) -> str: ...


@dataclass(frozen=True, slots=True)
class ClusterObjects:
    workloads: Mapping[str, Sequence[Obj]]  # kind -> objects (WORKLOAD_KINDS, Pod included)
    namespaces: Sequence[Obj]
    nodes: Sequence[Obj]
    slices: Sequence[Obj]
    classes: Sequence[Obj]
    claims: Sequence[Obj]
    webhook_configurations: Sequence[Obj]
    # The compiled admission-policy route (Kubernetes 1.36+), and the ConfigMaps its bindings
    # read: (namespace, name) -> the ConfigMap, None when missing.
    admission_policies: Sequence[Obj] = ()
    admission_policy_bindings: Sequence[Obj] = ()
    policy_configmaps: Mapping[tuple[str, str], Obj | None] = field(default_factory=dict)
    server_version: str | None = None  # e.g. v1.37.2: whether the scheduler's path is offered


def _server_version(reader: AuditReader) -> str | None:
    """The server's version; None where it does not say (a proxy that serves the API groups
    only): then no workload is shown on the scheduler's path, which needs 1.36 or later."""
    try:
        return reader.server_version()
    except KubeError:
        return None


def read_cluster(reader: AuditReader, namespace: str | None) -> ClusterObjects:
    workloads: dict[str, Sequence[Obj]] = {
        kind: reader.list_workloads(kind, namespace) for kind in WORKLOAD_KINDS if kind != "Pod"
    }
    workloads["Pod"] = reader.list_pods(namespace)
    bindings = reader.list_mutating_admission_policy_bindings()
    refs = {
        (str(ref.get("namespace", "")), str(ref.get("name", "")))
        for b in bindings
        if (ref := (b.get("spec") or {}).get("paramRef") or {}).get("name")
    }
    return ClusterObjects(
        workloads=workloads,
        namespaces=reader.list_namespaces(),
        nodes=reader.list_nodes(),
        slices=reader.list_resource_slices(),
        classes=reader.list_device_classes(),
        claims=reader.list_resource_claims(None),  # capacity is cluster-wide
        webhook_configurations=reader.list_mutating_webhook_configurations(),
        admission_policies=reader.list_mutating_admission_policies(),
        admission_policy_bindings=bindings,
        policy_configmaps={ref: reader.get_config_map(*ref) for ref in sorted(refs)},
        server_version=_server_version(reader),
    )


@dataclass(frozen=True, slots=True)
class PolicyInForce:
    source: str  # "ConfigMap NS/NAME", a file path, or "built-in"
    mode: str  # the mode it has; decisions are what Enforce would do
    digest: str


@dataclass(frozen=True, slots=True)
class AuditSummary:
    workloads: int
    rewritten: int
    unchanged: int
    denied: int
    exempt: int
    ready: bool  # no finding is `unready`


@dataclass(frozen=True, slots=True)
class WorkloadRoute:
    namespace: str
    workload: str  # Kind/name
    route: str  # "admission-policy" (renamed in the API server) or "webhook"
    path: str  # "scheduler" (renamed to a class's implicit name) or "templates"


@dataclass(frozen=True, slots=True)
class AuditReport:
    policy: PolicyInForce
    summary: AuditSummary
    workloads: tuple[WorkloadAudit, ...]
    capacity: tuple[ModelCapacity, ...]
    demand: tuple[DemandCapacity, ...]
    findings: tuple[Finding, ...]
    # The compiled admission-policy route's bindings found, and each workload's route.
    admission_policies: tuple[RouteBinding, ...] = ()
    routes: tuple[WorkloadRoute, ...] = ()


def build_audit(objects: ClusterObjects, *, policy: Policy, source: str) -> AuditReport:
    labels = {
        str((ns.get("metadata") or {}).get("name", "")): namespace_labels(ns)
        for ns in objects.namespaces
    }
    hooks = registrations(objects.webhook_configurations)
    workloads = find_workloads(objects.workloads)
    rows = decide_all(
        workloads,
        policy=policy,
        namespaces=labels,
        hooks=hooks,
    )
    matcher = DeviceMatcher.build(objects.slices, objects.classes)
    held = allocated_devices(objects.claims)
    plugin_held = plugin_held_gpus(objects.nodes, objects.workloads.get("Pod", ()))
    demand, missing = demand_capacity(rows, matcher, held, plugin_held)
    found = findings(
        policy=policy,
        rows=rows,
        matcher=matcher,
        demand=demand,
        missing_classes=missing,
        nodes=objects.nodes,
        hooks=hooks,
        held=held,
        plugin_held=plugin_held,
    )
    summary = AuditSummary(
        workloads=len(rows),
        rewritten=sum(r.decision == "rewritten" for r in rows),
        unchanged=sum(r.decision == "unchanged" for r in rows),
        denied=sum(r.decision == "denied" for r in rows),
        exempt=sum(r.exempt is not None for r in rows),
        ready=not any(f.severity == "unready" for f in found),
    )
    bindings = route_bindings(
        objects.admission_policies,
        objects.admission_policy_bindings,
        lambda namespace, name: objects.policy_configmaps.get((namespace, name)),
    )
    audited = {(r.namespace, r.kind, r.name) for r in rows}
    routes = workload_routes(
        [w for w in workloads if (w.namespace, w.kind, w.name) in audited],
        policy=policy,
        bindings=bindings,
        namespaces=labels,
        slices=objects.slices,
        offer=ClusterOffer.from_cluster(objects.server_version, objects.classes),
    )
    return AuditReport(
        policy=PolicyInForce(source, policy.mode, policy.digest),
        summary=summary,
        workloads=tuple(rows),
        capacity=tuple(model_capacity(matcher.devices)),
        demand=tuple(demand),
        findings=tuple(found),
        admission_policies=tuple(bindings),
        routes=tuple(
            WorkloadRoute(namespace, f"{kind}/{name}", route, path)
            for (namespace, kind, name), (route, path) in routes.items()
        ),
    )
