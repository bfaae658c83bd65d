"""Rules 1, 2 and 4 for claim specs and DeviceClasses: one-of fields, API limits, configs, CEL."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dracore.names import is_dns_label, is_dns_subdomain
from kubectl_dra import celcheck
from kubectl_dra.validate.findings import (
    ALLOCATION_MODES,
    MAX_ALLOCATED,
    MAX_CONFIGS,
    MAX_CONSTRAINTS,
    MAX_PARAMETERS_BYTES,
    MAX_REQUESTS,
    MAX_SELECTORS,
    MAX_SUBREQUESTS,
    MAX_TOLERATIONS,
    NVIDIA_DRIVER,
    SHARING_GATES,
    Report,
    as_dict,
    as_list,
    metadata_of,
)

# --- rules 1, 2, 4: claim specs and classes ---------------------------------------------------


def _selectors(report: Report, selectors: list[Any], path: str) -> list[celcheck.Checked]:
    if len(selectors) > MAX_SELECTORS:
        report.error(
            path, f"has {len(selectors)} selectors; the API server allows at most {MAX_SELECTORS}"
        )
    checked: list[celcheck.Checked] = []
    for i, selector in enumerate(selectors):
        expression = as_dict(as_dict(selector).get("cel")).get("expression")
        where = f"{path}[{i}].cel.expression"
        if not isinstance(expression, str):
            continue  # the schema check reported it
        try:
            result = celcheck.check(expression)
        except celcheck.CelError as exc:
            report.error(where, f"CEL: {exc}")
            continue
        for problem in result.problems:
            report.add(problem.severity, where, f"CEL: {problem.message}")
        if not any(p.severity == "error" for p in result.problems):
            checked.append(result)
    return checked


def _allocation(report: Report, request: Mapping[str, Any], path: str) -> int:
    """allocationMode/count rules; the number of devices this (sub)request asks for."""
    mode = request.get("allocationMode") or "ExactCount"
    count = request.get("count")
    if mode not in ALLOCATION_MODES:
        report.error(f"{path}.allocationMode", f"unknown mode {mode!r}; use ExactCount or All")
        return 0
    if mode == "All":
        if count is not None:
            report.error(
                f"{path}.count",
                "must not be set with allocationMode All (it takes every matching device)",
            )
        return 0
    if count is None:
        return 1
    if isinstance(count, int) and count <= 0:
        report.error(f"{path}.count", f"must be greater than 0, got {count}")
        return 0
    if isinstance(count, int) and count > MAX_ALLOCATED:
        report.error(
            f"{path}.count",
            f"asks for {count} devices; a claim can hold at most {MAX_ALLOCATED} allocated devices, so it passes the API server but can never be allocated; split it over several claims",
        )
    return count if isinstance(count, int) else 0


def _device_class_name(report: Report, name: Any, path: str) -> None:
    if isinstance(name, str) and not is_dns_subdomain(name):
        report.error(
            path,
            f"{name!r} is not a valid DeviceClass name (a DNS subdomain: lower case, digits, '-' and '.')",
        )


@dataclass(slots=True)
class Request:
    """One request, or one firstAvailable subrequest, with what it asks for."""

    path: str
    name: str  # "req" or "req/sub"
    device_class: str
    mode: str
    count: int
    admin_access: bool
    selectors: list[celcheck.Checked] = field(default_factory=list)


def unique_label(report: Report, name: Any, path: str, seen: set[str], what: str) -> None:
    """Request, subrequest and pod claim names: DNS labels, unique in their list."""
    if not isinstance(name, str):
        return  # the schema check reported it
    if not is_dns_label(name):
        report.error(
            path,
            f"{name!r} is not a valid {what} name (a DNS label: at most 63 of a-z, 0-9 and '-')",
        )
    if name in seen:
        report.error(path, f"duplicate {what} name {name!r}; names must be unique")
    seen.add(name)


def _device_request(report: Report, request: Mapping[str, Any], path: str, name: str) -> Request:
    """The fields an `exactly` request and a firstAvailable subrequest share."""
    _device_class_name(report, request.get("deviceClassName"), f"{path}.deviceClassName")
    count = _allocation(report, request, path)
    if len(as_list(request.get("tolerations"))) > MAX_TOLERATIONS:
        report.error(f"{path}.tolerations", f"has more than {MAX_TOLERATIONS} tolerations")
    if request.get("adminAccess"):
        report.warning(
            f"{path}.adminAccess",
            "adminAccess is only allowed in namespaces labelled resource.kubernetes.io/admin-access=true",
        )
    return Request(
        path,
        name,
        str(request.get("deviceClassName") or ""),
        str(request.get("allocationMode") or "ExactCount"),
        count,
        bool(request.get("adminAccess")),
        _selectors(report, as_list(request.get("selectors")), f"{path}.selectors"),
    )


def claim_spec_rules(report: Report, spec: Mapping[str, Any], path: str) -> list[list[Request]]:
    """Rules for a ResourceClaimSpec; per request, its alternatives (one unless firstAvailable)."""
    devices = as_dict(spec.get("devices"))
    base = f"{path}.devices"
    requests = as_list(devices.get("requests"))
    if len(requests) > MAX_REQUESTS:
        report.error(
            f"{base}.requests",
            f"has {len(requests)} requests; the API server allows at most {MAX_REQUESTS}",
        )
    names: set[str] = set()
    subnames: set[str] = set()
    result: list[list[Request]] = []
    total = 0
    for i, raw in enumerate(requests):
        request = as_dict(raw)
        where = f"{base}.requests[{i}]"
        name = request.get("name")
        unique_label(report, name, f"{where}.name", names, "request")
        exactly, first = request.get("exactly"), request.get("firstAvailable")
        if exactly is None and first is None:
            report.error(
                where,
                "must set exactly one of exactly (one kind of device) or firstAvailable (alternatives in order)",
            )
            continue
        if exactly is not None and first is not None:
            report.error(where, "sets both exactly and firstAvailable; keep one of them")
            continue
        if exactly is not None:
            exact = _device_request(report, as_dict(exactly), f"{where}.exactly", str(name))
            total += exact.count
            result.append([exact])
            continue
        subrequests = as_list(first)
        if not 1 <= len(subrequests) <= MAX_SUBREQUESTS:
            report.error(
                f"{where}.firstAvailable",
                f"has {len(subrequests)} entries; it needs 1 to {MAX_SUBREQUESTS}",
            )
        alternatives: list[Request] = []
        seen: set[str] = set()
        for j, raw_sub in enumerate(subrequests):
            sub = as_dict(raw_sub)
            sub_where = f"{where}.firstAvailable[{j}]"
            sub_name = sub.get("name")
            unique_label(report, sub_name, f"{sub_where}.name", seen, "subrequest")
            subnames.add(f"{name}/{sub_name}")
            alternatives.append(_device_request(report, sub, sub_where, f"{name}/{sub_name}"))
        largest = max((a.count for a in alternatives), default=0)
        total += largest
        result.append(alternatives)
    if total > MAX_ALLOCATED and all(r.count <= MAX_ALLOCATED for alt in result for r in alt):
        report.error(
            f"{base}.requests",
            f"the requests add up to {total} devices; a claim can hold at most {MAX_ALLOCATED}, so it can never be allocated",
        )
    known = names | subnames
    _constraints(report, as_list(devices.get("constraints")), f"{base}.constraints", known)
    _configs(report, as_list(devices.get("config")), f"{base}.config", known)
    return result


def _unknown_requests(report: Report, refs: list[Any], path: str, known: set[str]) -> None:
    for k, ref in enumerate(refs):
        if isinstance(ref, str) and ref not in known:
            choices = ", ".join(sorted(known)) or "none"
            report.error(
                f"{path}[{k}]",
                f"names request {ref!r}, which the claim does not have (requests: {choices})",
            )


def _qualified_attribute(name: str) -> bool:
    domain, _, identifier = name.rpartition("/")
    return (
        bool(domain)
        and is_dns_subdomain(domain)
        and len(domain) <= 63
        and identifier.isidentifier()
        and len(identifier) <= 32
    )


def _constraints(report: Report, constraints: list[Any], path: str, known: set[str]) -> None:
    if len(constraints) > MAX_CONSTRAINTS:
        report.error(
            path,
            f"has {len(constraints)} constraints; the API server allows at most {MAX_CONSTRAINTS}",
        )
    for i, raw in enumerate(constraints):
        constraint = as_dict(raw)
        where = f"{path}[{i}]"
        _unknown_requests(report, as_list(constraint.get("requests")), f"{where}.requests", known)
        kinds = [k for k in ("matchAttribute", "distinctAttribute") if constraint.get(k)]
        if len(kinds) != 1:
            report.error(where, "must set exactly one of matchAttribute or distinctAttribute")
        for kind in kinds:
            value = str(constraint[kind])
            if not _qualified_attribute(value):
                report.error(
                    f"{where}.{kind}",
                    f"{value!r} must be a fully qualified attribute name, <domain>/<name>, e.g. resource.kubernetes.io/pcieRoot",
                )


def _configs(report: Report, configs: list[Any], path: str, known: set[str] | None) -> None:
    if len(configs) > MAX_CONFIGS:
        report.error(
            path, f"has {len(configs)} entries; the API server allows at most {MAX_CONFIGS}"
        )
    for i, raw in enumerate(configs):
        config = as_dict(raw)
        where = f"{path}[{i}]"
        if known is not None:
            _unknown_requests(report, as_list(config.get("requests")), f"{where}.requests", known)
        opaque = config.get("opaque")
        if opaque is None:
            report.error(f"{where}.opaque", "is required: the configuration for the driver")
            continue
        _opaque(report, as_dict(opaque), f"{where}.opaque")


def _opaque(report: Report, opaque: Mapping[str, Any], path: str) -> None:
    driver = opaque.get("driver")
    if isinstance(driver, str) and not (is_dns_subdomain(driver) and len(driver) <= 63):
        report.error(
            f"{path}.driver",
            f"{driver!r} is not a valid driver name (a DNS subdomain of at most 63 characters)",
        )
    parameters = opaque.get("parameters")
    if parameters is None:
        return
    if not isinstance(parameters, dict):
        report.error(
            f"{path}.parameters", "must be a JSON object (normally with apiVersion and kind)"
        )
        return
    size = len(json.dumps(parameters, separators=(",", ":")).encode())
    if size > MAX_PARAMETERS_BYTES:
        report.error(
            f"{path}.parameters",
            f"is {size} bytes; the API server allows at most {MAX_PARAMETERS_BYTES} (10 KiB)",
        )
    if driver == NVIDIA_DRIVER:
        _nvidia_sharing(report, parameters, f"{path}.parameters")


def _nvidia_sharing(report: Report, parameters: Mapping[str, Any], path: str) -> None:
    """GpuConfig/MigDeviceConfig sharing: driver gates and strict fields."""
    if parameters.get("kind") not in ("GpuConfig", "MigDeviceConfig"):
        return
    sharing = as_dict(parameters.get("sharing"))
    strategy = sharing.get("strategy")
    if not strategy:
        return
    where = f"{path}.sharing.strategy"
    gate = SHARING_GATES.get(str(strategy))
    if gate is None:
        report.error(
            where,
            f"unknown sharing strategy {strategy!r}; the NVIDIA driver knows TimeSlicing and MPS",
        )
        return
    report.warning(
        where,
        f"{strategy} sharing works only if the NVIDIA DRA driver runs with the feature gate {gate}=true (alpha, off by default; Helm value featureGates); otherwise the pod fails at node preparation",
    )
    wrong = "mpsConfig" if strategy == "TimeSlicing" else "timeSlicingConfig"
    if wrong in sharing:
        report.error(
            f"{path}.sharing.{wrong}",
            f"is not allowed with strategy {strategy}; the driver decodes configs strictly and rejects it",
        )


def device_class_rules(report: Report, obj: Mapping[str, Any]) -> list[celcheck.Checked]:
    name = metadata_of(obj).get("name")
    if isinstance(name, str) and not is_dns_subdomain(name):
        report.error("metadata.name", f"{name!r} is not a valid DeviceClass name (a DNS subdomain)")
    spec = as_dict(obj.get("spec"))
    selectors = _selectors(report, as_list(spec.get("selectors")), "spec.selectors")
    _configs(report, as_list(spec.get("config")), "spec.config", None)
    return selectors
