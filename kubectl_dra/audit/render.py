"""How `kubectl dra audit` looks (pure): tables, or the stable document (docs/audit.md)."""

from __future__ import annotations

from typing import Any

from kubectl_dra.audit.decide import WorkloadAudit
from kubectl_dra.audit.report import AuditReport
from kubectl_dra.render import DESCRIBE_API_VERSION, NONE, Column, format_table, to_plain

AUDIT_KIND = "AuditReport"


def audit_document(report: AuditReport) -> dict[str, Any]:
    """`-o json|yaml`: {apiVersion, kind: AuditReport, policy, summary, workloads, capacity,
    demand, findings}; keys are only added, never renamed, within v1alpha1."""
    return {"apiVersion": DESCRIBE_API_VERSION, "kind": AUDIT_KIND, **to_plain(report)}


def _demand(row: WorkloadAudit) -> str:
    return ",".join(f"{r}={n}" for r, n in row.demand.items()) or NONE


def _details(row: WorkloadAudit, *, wide: bool) -> str:
    if row.decision != "rewritten":
        return row.reason
    parts = [f"{r.count} {r.device_class}" for r in row.requests]
    text = f"{' + '.join(parts) or 'no devices'}, {row.sharing}"
    selectors = sorted({s for r in row.requests for s in r.selectors})
    if selectors:
        text += (
            f", selectors: {' && '.join(selectors)}" if wide else f", {len(selectors)} selector(s)"
        )
    return text


def _current(current: bool | None) -> str:
    if current is None:
        return "no guard"
    return "yes" if current else "no: the webhook serves its pods"


def render_audit(report: AuditReport, *, wide: bool, width: int | None = None) -> str:
    """The tables; without wide, fitted to `width` (prose wraps, low-priority columns drop)."""
    limit = None if wide else width
    s = report.summary
    header = (
        f"Policy: {report.policy.source} (mode {report.policy.mode}; decisions are what Enforce "
        f"would do). Workloads: {s.workloads} ({s.rewritten} rewritten, {s.unchanged} unchanged, "
        f"{s.denied} denied; {s.exempt} exempt or skipped). Ready: {'yes' if s.ready else 'no'}.\n\n"
    )
    headers = [Column("NAMESPACE"), Column("WORKLOAD"), Column("REPLICAS", priority=2)]
    headers += [Column("LEGACY/POD", priority=1), Column("DECISION")]
    headers += [*([Column("EXEMPT")] if wide else []), Column("DETAILS", wrap=True)]
    # With the compiled route in the cluster: which of the two serves each workload's pods.
    routes = {(r.namespace, r.workload): r.route for r in report.routes}
    with_route = bool(report.admission_policies)
    if with_route:
        headers.insert(5, Column("ROUTE", priority=1))
    # Once some rewritten pod would take the scheduler's path: which path each one takes.
    paths = {(r.namespace, r.workload): r.path for r in report.routes}
    rewritten = [w for w in report.workloads if w.decision == "rewritten"]
    with_path = any(
        paths.get((w.namespace, f"{w.kind}/{w.name}")) == "scheduler" for w in rewritten
    )
    if with_path:
        headers.insert(6 if with_route else 5, Column("PATH", priority=1))

    def path(w: WorkloadAudit) -> list[str]:
        if not with_path:
            return []
        return [
            paths.get((w.namespace, f"{w.kind}/{w.name}"), NONE)
            if w.decision == "rewritten"
            else NONE
        ]

    rows = [
        [
            w.namespace,
            f"{w.kind}/{w.name}",
            str(w.replicas),
            _demand(w),
            w.decision,
            *([routes.get((w.namespace, f"{w.kind}/{w.name}"), NONE)] if with_route else []),
            *path(w),
            *([w.exempt or NONE] if wide else []),
            _details(w, wide=wide),
        ]
        for w in report.workloads
    ]
    workloads = (
        format_table(headers, rows, width=limit)
        if rows
        else "No workloads ask for legacy GPU resources.\n"
    )
    capacity = format_table(
        ["DRIVER", "MODEL", "MIG PROFILE", "DEVICES", "GPUS", "NODES"],
        (
            [c.driver, c.model, c.profile or NONE, str(c.devices), str(c.units), str(c.nodes)]
            for c in report.capacity
        ),
        width=limit,
    )
    demand_headers = ["DEVICECLASS", "NEEDED", "FREE", "MATCHING"]
    demand_headers += ["SELECTORS", "WORKLOADS"] if wide else []
    demand = format_table(
        demand_headers,
        (
            [
                d.device_class + (" (MIG)" if d.partition else ""),
                str(d.needed),
                str(d.free),
                str(d.matching),
                *([" && ".join(d.selectors) or NONE, ",".join(d.workloads)] if wide else []),
            ]
            for d in report.demand
        ),
        width=limit,
    )
    findings = format_table(
        [Column("SEVERITY"), Column("CHECK", priority=1), Column("FINDING", wrap=True)],
        ([f.severity, f.check, f.message] for f in report.findings),
        width=limit,
    )
    parts = [header + workloads]
    if report.admission_policies:
        parts.append(
            format_table(
                ["ADMISSION POLICY BINDING", "POLICY", "CONFIGMAP", "CURRENT"],
                (
                    [b.name, b.policy, b.configmap or NONE, _current(b.current)]
                    for b in report.admission_policies
                ),
                width=limit,
            )
        )
    parts.append(capacity if report.capacity else "No DRA devices are published.\n")
    if report.demand:
        parts.append(demand)
    parts.append(findings)
    return "\n".join(parts)
