"""`kubectl dra validate`, the pure part: manifests (and an optional cluster snapshot) -> findings.

Rules, in the order of issue 4:
1. Structure: the resource.k8s.io/v1 shape, checked against the API's OpenAPI definitions
   copied into `schemas/resource-v1.json` by `hack/gen_dra_schema.py` (unknown fields, types,
   required fields), plus the one-of rules the schema cannot say (`exactly` vs
   `firstAvailable`, allocationMode and count).
2. The API server's limits (DRA-REFERENCE §2): DNS names, at most 32 requests / selectors /
   configs / constraints, count > 0, counts above 32 that can never be allocated, opaque
   parameters an object of at most 10 KiB, CEL at most 10 KiB.
3. Cross references between pods, templates and claims, from the input or the cluster.
4. CEL selectors: parsed and checked against `device` (celcheck.py).
5. With a cluster snapshot: classes exist, selectors evaluated on every published device,
   whether one node can satisfy each request; NVIDIA sharing configs need driver gates.
6. Legacy `nvidia.com/gpu` pods: an info finding pointing at `kubectl dra convert`.

Objects of other kinds (Namespace, ConfigMap, Service, ...) are skipped: they are not ours to
check and `kubectl apply` validates them. Nothing here talks to the API server.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any, Final, Literal

from kubectl_dra import celcheck
from kubectl_dra.convert import template_of, template_path
from kubectl_dra.documents import Document
from kubectl_dra.render import align_columns
from webhook.core.names import is_dns_label, is_dns_subdomain
from webhook.core.policy import MAX_DEVICES_PER_CLAIM

if TYPE_CHECKING:
    from kubectl_dra.kube import ClusterReader

Severity = Literal["error", "warning", "info"]
SEVERITIES: Final[tuple[Severity, ...]] = ("error", "warning", "info")

RESOURCE_API: Final = "resource.k8s.io/v1"
MAX_REQUESTS: Final = 32
MAX_SUBREQUESTS: Final = 8
MAX_SELECTORS: Final = 32
MAX_CONSTRAINTS: Final = 32
MAX_CONFIGS: Final = 32
MAX_TOLERATIONS: Final = 16
MAX_ALLOCATED: Final = MAX_DEVICES_PER_CLAIM  # devices one claim can ever get
MAX_PARAMETERS_BYTES: Final = 10 * 1024
ALLOCATION_MODES: Final = ("ExactCount", "All")
LEGACY_PREFIXES: Final = ("nvidia.com/gpu", "nvidia.com/mig-")
NVIDIA_DRIVER: Final = "gpu.nvidia.com"
SHARING_GATES: Final = {"TimeSlicing": "TimeSlicingSettings", "MPS": "MPSSupport"}


@dataclass(frozen=True, slots=True)
class Finding:
    severity: Severity
    object: str  # Kind/namespace/name, or Kind/name
    field: str  # API field path, e.g. spec.devices.requests[0].exactly.count
    message: str

    def to_dict(self) -> dict[str, str]:
        return {
            "severity": self.severity,
            "object": self.object,
            "field": self.field,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class ClusterSnapshot:
    """What --cluster reads, as API dicts: a constant number of list calls."""

    device_classes: tuple[dict[str, Any], ...] = ()
    resource_slices: tuple[dict[str, Any], ...] = ()
    resource_claims: tuple[dict[str, Any], ...] = ()
    resource_claim_templates: tuple[dict[str, Any], ...] = ()

    @classmethod
    def from_reader(cls, reader: ClusterReader) -> ClusterSnapshot:
        """Four list calls, however many objects the cluster has."""
        return cls(
            device_classes=tuple(reader.list_device_classes()),
            resource_slices=tuple(reader.list_resource_slices()),
            resource_claims=tuple(reader.list_resource_claims(None)),
            resource_claim_templates=tuple(reader.list_resource_claim_templates(None)),
        )


# --- helpers ----------------------------------------------------------------------------------


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata = obj.get("metadata")
    return metadata if isinstance(metadata, Mapping) else {}


def _name(obj: Mapping[str, Any]) -> str:
    return str(_meta(obj).get("name") or _meta(obj).get("generateName") or "(unnamed)")


def object_ref(obj: Mapping[str, Any]) -> str:
    """`Kind/namespace/name`, or `Kind/name` when no namespace is set (cluster-scoped or -n)."""
    namespace = _meta(obj).get("namespace")
    kind = str(obj.get("kind") or "Object")
    return f"{kind}/{namespace}/{_name(obj)}" if namespace else f"{kind}/{_name(obj)}"


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


class _Report:
    """Collects the findings for one object."""

    def __init__(self, obj: Mapping[str, Any]) -> None:
        self.ref = object_ref(obj)
        self.findings: list[Finding] = []

    def add(self, severity: Severity, path: str, message: str) -> None:
        self.findings.append(Finding(severity, self.ref, path, message))

    def error(self, path: str, message: str) -> None:
        self.add("error", path, message)

    def warning(self, path: str, message: str) -> None:
        self.add("warning", path, message)

    def info(self, path: str, message: str) -> None:
        self.add("info", path, message)


# --- rule 1: structure from the OpenAPI schema ------------------------------------------------


@cache
def _definitions() -> dict[str, Any]:
    text = (resources.files("kubectl_dra") / "schemas" / "resource-v1.json").read_text()
    definitions: dict[str, Any] = json.loads(text)["definitions"]
    return definitions


_JSON_TYPES: Final[dict[str, type | tuple[type, ...]]] = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "number": (int, float),
}


def _type_ok(value: Any, allowed: Sequence[str]) -> bool:
    for name in allowed:
        if name == "null" and value is None:
            return True
        if name == "integer" and isinstance(value, int) and not isinstance(value, bool):
            return True
        python = _JSON_TYPES.get(name)
        if (
            python
            and isinstance(value, python)
            and not (name == "number" and isinstance(value, bool))
        ):
            return True
    return False


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def check_schema(value: Any, schema: Mapping[str, Any], path: str) -> Iterator[tuple[str, str]]:
    """(field path, message) for every place `value` breaks the OpenAPI `schema`."""
    if "$ref" in schema:
        yield from check_schema(value, _definitions()[schema["$ref"]], path)
        return
    if "oneOf" in schema:
        if not any(not list(check_schema(value, s, path)) for s in schema["oneOf"]):
            yield (
                path,
                f"has the wrong type ({type(value).__name__}); expected a quantity such as 1 or 80Gi",
            )
        return
    allowed = schema.get("type")
    if allowed:
        allowed = [allowed] if isinstance(allowed, str) else list(allowed)
        if not _type_ok(value, allowed):
            wanted = " or ".join(t for t in allowed if t != "null")
            yield (
                path,
                f"must be {'an' if wanted[:1] in 'aeiou' else 'a'} {wanted}, not {json.dumps(value)[:60]}",
            )
            return
    if value is None:
        return
    if "enum" in schema and value not in schema["enum"]:
        yield path, f"must be one of {', '.join(map(str, schema['enum']))}"
    if isinstance(value, dict):
        properties: Mapping[str, Any] = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for key in schema.get("required") or ():
            if key not in value:
                yield _join(path, key), "is required"
        for key, item in value.items():
            if key in properties:
                yield from check_schema(item, properties[key], _join(path, key))
            elif extra is False:
                known = ", ".join(sorted(properties))
                yield _join(path, key), f"unknown field {key!r}; the API knows: {known}"
            elif isinstance(extra, dict):
                yield from check_schema(item, extra, _join(path, key))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            yield from check_schema(item, schema["items"], f"{path}[{i}]")


def _structure(report: _Report, value: Any, definition: str, path: str = "") -> bool:
    """Schema errors into the report; True if the shape is sound enough to go on."""
    problems = list(check_schema(value, {"$ref": definition}, path))
    for where, message in problems:
        report.error(where, message)
    return not problems


# --- rules 1, 2, 4: claim specs and classes ---------------------------------------------------


def _selectors(report: _Report, selectors: list[Any], path: str) -> list[celcheck.Checked]:
    if len(selectors) > MAX_SELECTORS:
        report.error(
            path, f"has {len(selectors)} selectors; the API server allows at most {MAX_SELECTORS}"
        )
    checked: list[celcheck.Checked] = []
    for i, selector in enumerate(selectors):
        expression = _dict(_dict(selector).get("cel")).get("expression")
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


def _allocation(report: _Report, request: Mapping[str, Any], path: str) -> int:
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


def _device_class_name(report: _Report, name: Any, path: str) -> None:
    if isinstance(name, str) and not is_dns_subdomain(name):
        report.error(
            path,
            f"{name!r} is not a valid DeviceClass name (a DNS subdomain: lower case, digits, '-' and '.')",
        )


@dataclass(slots=True)
class _Request:
    """One request, or one firstAvailable subrequest, with what it asks for."""

    path: str
    name: str  # "req" or "req/sub"
    device_class: str
    mode: str
    count: int
    admin_access: bool
    selectors: list[celcheck.Checked] = field(default_factory=list)


def _unique_label(report: _Report, name: Any, path: str, seen: set[str], what: str) -> None:
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


def _device_request(report: _Report, request: Mapping[str, Any], path: str, name: str) -> _Request:
    """The fields an `exactly` request and a firstAvailable subrequest share."""
    _device_class_name(report, request.get("deviceClassName"), f"{path}.deviceClassName")
    count = _allocation(report, request, path)
    if len(_list(request.get("tolerations"))) > MAX_TOLERATIONS:
        report.error(f"{path}.tolerations", f"has more than {MAX_TOLERATIONS} tolerations")
    if request.get("adminAccess"):
        report.warning(
            f"{path}.adminAccess",
            "adminAccess is only allowed in namespaces labelled resource.kubernetes.io/admin-access=true",
        )
    return _Request(
        path,
        name,
        str(request.get("deviceClassName") or ""),
        str(request.get("allocationMode") or "ExactCount"),
        count,
        bool(request.get("adminAccess")),
        _selectors(report, _list(request.get("selectors")), f"{path}.selectors"),
    )


def _claim_spec(report: _Report, spec: Mapping[str, Any], path: str) -> list[list[_Request]]:
    """Rules for a ResourceClaimSpec; per request, its alternatives (one unless firstAvailable)."""
    devices = _dict(spec.get("devices"))
    base = f"{path}.devices"
    requests = _list(devices.get("requests"))
    if len(requests) > MAX_REQUESTS:
        report.error(
            f"{base}.requests",
            f"has {len(requests)} requests; the API server allows at most {MAX_REQUESTS}",
        )
    names: set[str] = set()
    subnames: set[str] = set()
    result: list[list[_Request]] = []
    total = 0
    for i, raw in enumerate(requests):
        request = _dict(raw)
        where = f"{base}.requests[{i}]"
        name = request.get("name")
        _unique_label(report, name, f"{where}.name", names, "request")
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
            exact = _device_request(report, _dict(exactly), f"{where}.exactly", str(name))
            total += exact.count
            result.append([exact])
            continue
        subrequests = _list(first)
        if not 1 <= len(subrequests) <= MAX_SUBREQUESTS:
            report.error(
                f"{where}.firstAvailable",
                f"has {len(subrequests)} entries; it needs 1 to {MAX_SUBREQUESTS}",
            )
        alternatives: list[_Request] = []
        seen: set[str] = set()
        for j, raw_sub in enumerate(subrequests):
            sub = _dict(raw_sub)
            sub_where = f"{where}.firstAvailable[{j}]"
            sub_name = sub.get("name")
            _unique_label(report, sub_name, f"{sub_where}.name", seen, "subrequest")
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
    _constraints(report, _list(devices.get("constraints")), f"{base}.constraints", known)
    _configs(report, _list(devices.get("config")), f"{base}.config", known)
    return result


def _unknown_requests(report: _Report, refs: list[Any], path: str, known: set[str]) -> None:
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


def _constraints(report: _Report, constraints: list[Any], path: str, known: set[str]) -> None:
    if len(constraints) > MAX_CONSTRAINTS:
        report.error(
            path,
            f"has {len(constraints)} constraints; the API server allows at most {MAX_CONSTRAINTS}",
        )
    for i, raw in enumerate(constraints):
        constraint = _dict(raw)
        where = f"{path}[{i}]"
        _unknown_requests(report, _list(constraint.get("requests")), f"{where}.requests", known)
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


def _configs(report: _Report, configs: list[Any], path: str, known: set[str] | None) -> None:
    if len(configs) > MAX_CONFIGS:
        report.error(
            path, f"has {len(configs)} entries; the API server allows at most {MAX_CONFIGS}"
        )
    for i, raw in enumerate(configs):
        config = _dict(raw)
        where = f"{path}[{i}]"
        if known is not None:
            _unknown_requests(report, _list(config.get("requests")), f"{where}.requests", known)
        opaque = config.get("opaque")
        if opaque is None:
            report.error(f"{where}.opaque", "is required: the configuration for the driver")
            continue
        _opaque(report, _dict(opaque), f"{where}.opaque")


def _opaque(report: _Report, opaque: Mapping[str, Any], path: str) -> None:
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


def _nvidia_sharing(report: _Report, parameters: Mapping[str, Any], path: str) -> None:
    """GpuConfig/MigDeviceConfig sharing (DRA-REFERENCE §6): driver gates and strict fields."""
    if parameters.get("kind") not in ("GpuConfig", "MigDeviceConfig"):
        return
    sharing = _dict(parameters.get("sharing"))
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


def _device_class(report: _Report, obj: Mapping[str, Any]) -> list[celcheck.Checked]:
    name = _meta(obj).get("name")
    if isinstance(name, str) and not is_dns_subdomain(name):
        report.error("metadata.name", f"{name!r} is not a valid DeviceClass name (a DNS subdomain)")
    spec = _dict(obj.get("spec"))
    selectors = _selectors(report, _list(spec.get("selectors")), "spec.selectors")
    _configs(report, _list(spec.get("config")), "spec.config", None)
    return selectors


# --- rule 3 and 6: pods -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _ClaimSource:
    """A template or claim the input or the cluster has, by namespace and name."""

    kind: str
    namespace: str
    name: str
    requests: frozenset[str]
    from_cluster: bool


def _request_names(obj: Mapping[str, Any]) -> frozenset[str]:
    spec = _dict(obj.get("spec"))
    if obj.get("kind") == "ResourceClaimTemplate":
        spec = _dict(spec.get("spec"))
    return frozenset(
        str(_dict(r).get("name")) for r in _list(_dict(spec.get("devices")).get("requests"))
    )


def _claim_sources(
    objects: Iterable[Mapping[str, Any]], *, namespace: str, from_cluster: bool
) -> dict[tuple[str, str, str], _ClaimSource]:
    found: dict[tuple[str, str, str], _ClaimSource] = {}
    for obj in objects:
        kind = str(obj.get("kind"))
        if kind not in ("ResourceClaim", "ResourceClaimTemplate"):
            continue
        ns = str(_meta(obj).get("namespace") or namespace)
        source = _ClaimSource(kind, ns, _name(obj), _request_names(obj), from_cluster)
        found[(kind, ns, source.name)] = source
    return found


def _containers(spec: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for group in ("initContainers", "containers", "ephemeralContainers"):
        for i, container in enumerate(_list(spec.get(group))):
            yield f"{group}[{i}]", _dict(container)


def _pod(
    report: _Report,
    obj: Mapping[str, Any],
    template: Mapping[str, Any],
    *,
    prefix: str,
    namespace: str,
    sources: Mapping[tuple[str, str, str], _ClaimSource],
    cluster: bool,
    where: str,
) -> None:
    spec = _dict(template.get("spec"))
    base = _join(prefix, "spec")
    pod_namespace = str(_meta(obj).get("namespace") or namespace)
    claims: dict[str, frozenset[str] | None] = {}
    pod_claim_names: set[str] = set()
    for i, raw in enumerate(_list(spec.get("resourceClaims"))):
        path = f"{base}.resourceClaims[{i}]"
        if not _structure(report, raw, "io.k8s.api.core.v1.PodResourceClaim", path):
            continue
        name = raw["name"]
        _unique_label(report, name, f"{path}.name", pod_claim_names, "pod claim")
        by_claim, by_template = raw.get("resourceClaimName"), raw.get("resourceClaimTemplateName")
        if bool(by_claim) == bool(by_template):
            report.error(
                path, "must set exactly one of resourceClaimName or resourceClaimTemplateName"
            )
            claims[name] = None
            continue
        kind = "ResourceClaim" if by_claim else "ResourceClaimTemplate"
        field_name = "resourceClaimName" if by_claim else "resourceClaimTemplateName"
        target = str(by_claim or by_template)
        if not is_dns_subdomain(target):
            report.error(
                f"{path}.{field_name}", f"{target!r} is not a valid {kind} name (a DNS subdomain)"
            )
        claims[name] = _resolve(
            report,
            kind,
            target,
            f"{path}.{field_name}",
            pod_namespace=pod_namespace,
            sources=sources,
            cluster=cluster,
        )
    if _dict(spec.get("resources")).get("claims"):
        report.error(
            f"{base}.resources.claims",
            "pod-level resources cannot carry claims; list them under each container's resources.claims",
        )
    for container_path, container in _containers(spec):
        resources_ = _dict(container.get("resources"))
        path = f"{base}.{container_path}.resources"
        amounts = {**_dict(resources_.get("requests")), **_dict(resources_.get("limits"))}
        legacy = [f"{v} {k}" for k, v in amounts.items() if str(k).startswith(LEGACY_PREFIXES)]
        if legacy:
            source = "-" if where == "stdin" else where
            report.info(
                f"{path}.limits",
                f"container {container.get('name')!r} asks for {' and '.join(legacy)} through the device plugin; `kubectl dra convert -f {source}` shows the DRA equivalent (a ResourceClaimTemplate and resources.claims)",
            )
        container_claims = _list(resources_.get("claims"))
        if container_claims and container_path.startswith("ephemeralContainers"):
            report.error(f"{path}.claims", "ephemeral containers cannot use resource claims")
            continue
        seen: set[tuple[str, str | None]] = set()
        for k, raw in enumerate(container_claims):
            claim_path = f"{path}.claims[{k}]"
            if not _structure(report, raw, "io.k8s.api.core.v1.ResourceClaim", claim_path):
                continue
            name, request = raw["name"], raw.get("request") or None
            if name not in claims:
                choices = ", ".join(sorted(claims)) or "none are declared"
                report.error(
                    f"{claim_path}.name",
                    f"{name!r} must be one of the names in spec.resourceClaims ({choices}); add the claim to spec.resourceClaims or fix the name",
                )
                continue
            if (name, request) in seen:
                report.error(
                    claim_path,
                    f"claim {name!r}{f' request {request!r}' if request else ''} is listed twice for this container",
                )
            elif (request is None and any(n == name for n, _ in seen)) or (
                request is not None and (name, None) in seen
            ):
                report.error(
                    claim_path,
                    f"claim {name!r} is listed both whole and for one of its requests; keep one",
                )
            seen.add((name, request))
            known = claims[name]
            if request is not None and known is not None and request not in known:
                choices = ", ".join(sorted(known)) or "none"
                report.error(
                    f"{claim_path}.request",
                    f"names request {request!r}, which pod claim {name!r} does not have (requests: {choices})",
                )


def _resolve(
    report: _Report,
    kind: str,
    target: str,
    path: str,
    *,
    pod_namespace: str,
    sources: Mapping[tuple[str, str, str], _ClaimSource],
    cluster: bool,
) -> frozenset[str] | None:
    """The request names of the referenced template/claim, or None when it is not known."""
    source = sources.get((kind, pod_namespace, target))
    if source is not None:
        return source.requests
    elsewhere = sorted(
        ns for (k, ns, n), s in sources.items() if k == kind and n == target and not s.from_cluster
    )
    if elsewhere:
        report.error(
            path,
            f"{kind} {target!r} is in namespace {', '.join(elsewhere)}, but the pod is in {pod_namespace}; a pod can only use {kind}s of its own namespace",
        )
    elif cluster:
        report.error(
            path,
            f"{kind} {pod_namespace}/{target} is not in the input nor in the cluster; the pod would stay Pending until it exists",
        )
    return None


# --- rule 5: against the cluster --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Device:
    node: str  # node name, or "" for devices reachable from several nodes
    ref: str  # driver/pool/device
    value: Any  # the `device` CEL value
    free: bool


def _devices(snapshot: ClusterSnapshot) -> list[_Device]:
    """Every device of the newest generation of each pool, with the node it sits on."""
    newest: dict[tuple[str, str], int] = {}
    for slice_ in snapshot.resource_slices:
        spec = _dict(slice_.get("spec"))
        pool = _dict(spec.get("pool"))
        key = (str(spec.get("driver")), str(pool.get("name")))
        newest[key] = max(newest.get(key, 0), int(pool.get("generation") or 0))
    allocated: set[str] = set()
    for claim in snapshot.resource_claims:
        allocation = _dict(_dict(claim.get("status")).get("allocation"))
        for result in _list(_dict(allocation.get("devices")).get("results")):
            result = _dict(result)
            allocated.add(f"{result.get('driver')}/{result.get('pool')}/{result.get('device')}")
    devices: list[_Device] = []
    for slice_ in snapshot.resource_slices:
        spec = _dict(slice_.get("spec"))
        pool = _dict(spec.get("pool"))
        driver, pool_name = str(spec.get("driver")), str(pool.get("name"))
        if int(pool.get("generation") or 0) < newest[(driver, pool_name)]:
            continue
        for raw in _list(spec.get("devices")):
            device = _dict(raw)
            ref = f"{driver}/{pool_name}/{device.get('name')}"
            node = str(device.get("nodeName") or spec.get("nodeName") or "")
            value = celcheck.device_value(device, driver=driver)
            devices.append(_Device(node, ref, value, ref not in allocated))
    return devices


def _matches(
    selectors: Sequence[celcheck.Checked], devices: Sequence[_Device]
) -> tuple[list[_Device], list[tuple[str, int, int]], list[str]]:
    """Devices every selector accepts; per selector (label, in, out); runtime errors."""
    remaining = list(devices)
    steps: list[tuple[str, int, int]] = []
    errors: list[str] = []
    for label, selector in [(f"selector {i}", s) for i, s in enumerate(selectors)]:
        kept: list[_Device] = []
        for device in remaining:
            try:
                if selector.evaluate(device.value):
                    kept.append(device)
            except celcheck.CelEvaluationError as exc:
                errors.append(f"{label} fails on {device.ref}: {exc}")
        steps.append((label, len(remaining), len(kept)))
        remaining = kept
    return remaining, steps, errors


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _explain(
    class_name: str,
    class_steps: list[tuple[str, int, int]],
    request_steps: list[tuple[str, int, int]],
) -> str:
    parts = [
        f"DeviceClass {class_name} {label} keeps {out} of {inn}" for label, inn, out in class_steps
    ] + [f"request {label} keeps {out} of {inn}" for label, inn, out in request_steps]
    return "; ".join(parts)


class _ClusterCheck:
    def __init__(
        self, snapshot: ClusterSnapshot, input_classes: Mapping[str, list[celcheck.Checked]]
    ):
        self.devices = _devices(snapshot)
        self.classes: dict[str, list[celcheck.Checked]] = {}
        for obj in snapshot.device_classes:
            selectors: list[celcheck.Checked] = []
            for selector in _list(_dict(obj.get("spec")).get("selectors")):
                expression = _dict(_dict(selector).get("cel")).get("expression")
                try:
                    checked = celcheck.check(str(expression))
                except celcheck.CelError:
                    continue
                selectors.append(checked)
            self.classes[_name(obj)] = selectors
        self.classes.update(input_classes)  # the input is what the user is about to apply
        self._in_class: dict[str, tuple[list[_Device], list[tuple[str, int, int]], list[str]]] = {}

    def in_class(self, name: str) -> tuple[list[_Device], list[tuple[str, int, int]], list[str]]:
        """The devices DeviceClass `name` selects (evaluated once per class per run)."""
        if name not in self._in_class:
            self._in_class[name] = _matches(self.classes[name], self.devices)
        return self._in_class[name]

    def device_class(self, report: _Report, name: str) -> None:
        """For a DeviceClass of the input: how many devices it selects."""
        selected, _, failures = self.in_class(name)
        nodes = {d.node for d in selected if d.node}
        if failures:
            report.error(
                "spec.selectors",
                f"CEL runtime error: {failures[0]}; the scheduler stops allocating when a selector fails",
            )
        report.info(
            "spec.selectors",
            f"{_plural(len(selected), 'device')} of {len(self.devices)} match on {_plural(len(nodes), 'node')}",
        )

    def request(self, report: _Report, alternatives: list[_Request]) -> list[_Device] | None:
        """Findings for one request; its matching devices when it alone fits (exactly only)."""
        outcomes: list[str] = []
        fitting: list[_Device] | None = None
        for request in alternatives:
            if request.device_class not in self.classes:
                known = ", ".join(sorted(self.classes)) or "none"
                report.error(
                    f"{request.path}.deviceClassName",
                    f"DeviceClass {request.device_class!r} does not exist in the cluster (classes: {known}); create it or fix the name",
                )
                outcomes.append("missing class")
                continue
            in_class, class_steps, class_errors = self.in_class(request.device_class)
            matching, request_steps, request_errors = _matches(request.selectors, in_class)
            for message in (class_errors + request_errors)[:1]:
                more = len(class_errors) + len(request_errors) - 1
                report.error(
                    f"{request.path}.selectors",
                    f"CEL runtime error: {message}{f' (and {more} more)' if more else ''}; the scheduler stops allocating when a selector fails, guard the attribute with `in`",
                )
            nodes = {d.node for d in matching if d.node}
            label = f"request {request.name!r}"
            if not matching:
                why = _explain(request.device_class, class_steps, request_steps)
                report.error(
                    f"{request.path}.selectors"
                    if request.selectors
                    else f"{request.path}.deviceClassName",
                    f"{label}: no device in the cluster matches ({len(self.devices)} published; {why})",
                )
                outcomes.append("no match")
                continue
            report.info(
                request.path,
                f"{label}: {_plural(len(matching), 'device')} match on {_plural(len(nodes), 'node')}",
            )
            fits = self._fits(report, request, matching, class_steps, request_steps)
            outcomes.append("fits" if fits else "does not fit")
            if fits and len(alternatives) == 1 and request.mode == "ExactCount":
                fitting = matching
        if len(alternatives) > 1 and "fits" not in outcomes:
            report.error(
                alternatives[0].path.rsplit(".", 1)[0],
                "no firstAvailable alternative can be allocated in the cluster now",
            )
        return fitting

    def claim(
        self, report: _Report, path: str, requests: list[tuple[_Request, list[_Device]]]
    ) -> None:
        """Requests that each fit alone must also fit together: one node, distinct devices."""
        if len(requests) < 2:
            return
        nodes = {d.node for _, devices in requests for d in devices if d.node} or {""}
        best, best_node = 0, ""
        needed = sum(r.count for r, _ in requests)
        for node in sorted(nodes):
            slots = [
                [d.ref for d in devices if d.free and d.node in (node, "")]
                for request, devices in requests
                for _ in range(request.count)
            ]
            served = _assign(slots)
            if served == needed:
                return
            if served > best:
                best, best_node = served, node
        names = ", ".join(repr(r.name) for r, _ in requests)
        report.error(
            path,
            f"requests {names} fit one by one but not together: they need {needed} distinct free devices on one node, and at most {best} can be given on any node{f' ({best_node})' if best_node else ''}; lower the counts or split the claim",
        )

    def _fits(
        self,
        report: _Report,
        request: _Request,
        matching: list[_Device],
        class_steps: list[tuple[str, int, int]],
        request_steps: list[tuple[str, int, int]],
    ) -> bool:
        shared = [d for d in matching if not d.node]  # reachable from any node
        per_node: dict[str, list[_Device]] = defaultdict(list)
        for device in matching:
            if device.node:
                per_node[device.node].append(device)
        if request.mode == "All":
            busy = [d.ref for d in matching if not d.free]
            if busy and not request.admin_access:
                report.error(
                    request.path,
                    f"allocationMode All needs every matching device free, but {_plural(len(busy), 'device')} are allocated ({', '.join(busy[:3])})",
                )
                return False
            return True
        free_on = Counter({node: sum(d.free for d in devs) for node, devs in per_node.items()})
        shared_free = sum(d.free for d in shared)
        best_node, best = (free_on.most_common(1) or [("", 0)])[0]
        if best + shared_free >= request.count:
            return True
        total_on = max((len(devs) for devs in per_node.values()), default=0) + len(shared)
        why = _explain(request.device_class, class_steps, request_steps)
        where = f" (most on {best_node})" if best_node else ""
        report.error(
            f"{request.path}.count" if request.count > 1 else request.path,
            f"request {request.name!r} needs {_plural(request.count, 'device')} on one node, but at most {best + shared_free} matching free devices are on one node{where}"
            f" ({total_on} matching in all, the rest allocated); matching: {why}; lower the count or relax the selectors",
        )
        return False


def _assign(slots: list[list[str]]) -> int:
    """How many slots get a distinct device (bipartite matching, augmenting paths)."""
    owner: dict[str, int] = {}

    def place(slot: int, seen: set[str]) -> bool:
        for device in slots[slot]:
            if device in seen:
                continue
            seen.add(device)
            if device not in owner or place(owner[device], seen):
                owner[device] = slot
                return True
        return False

    return sum(place(i, set()) for i in range(len(slots)))


# --- entry point ------------------------------------------------------------------------------

_DEFINITIONS: Final = {
    "ResourceClaim": "io.k8s.api.resource.v1.ResourceClaim",
    "ResourceClaimTemplate": "io.k8s.api.resource.v1.ResourceClaimTemplate",
    "DeviceClass": "io.k8s.api.resource.v1.DeviceClass",
}


def validate_documents(
    documents: Sequence[Document],
    *,
    cluster: ClusterSnapshot | None = None,
    namespace: str = "default",
) -> list[Finding]:
    """Findings for every object of `documents`, in input order; `namespace` for objects without one."""
    objects = [d.object for d in documents]
    sources = _claim_sources(objects, namespace=namespace, from_cluster=False)
    if cluster is not None:
        from_cluster = _claim_sources(
            [*cluster.resource_claims, *cluster.resource_claim_templates],
            namespace=namespace,
            from_cluster=True,
        )
        sources = {**from_cluster, **sources}
    findings: list[Finding] = []
    input_classes: dict[str, list[celcheck.Checked]] = {}
    claim_requests: list[tuple[_Report, list[list[_Request]], str]] = []
    class_reports: list[tuple[_Report, str]] = []
    reports: list[_Report] = []
    for document in documents:
        obj = document.object
        report = _Report(obj)
        reports.append(report)
        kind, api_version = obj.get("kind"), obj.get("apiVersion")
        if kind in _DEFINITIONS:
            if api_version != RESOURCE_API:
                report.warning(
                    "apiVersion",
                    f"{api_version} is not checked; kubectl dra validate checks {RESOURCE_API} (Kubernetes 1.34+), whose request fields sit under exactly/firstAvailable",
                )
                continue
            if not _structure(report, obj, _DEFINITIONS[str(kind)]):
                continue
            if kind == "DeviceClass":
                input_classes[_name(obj)] = _device_class(report, obj)
                class_reports.append((report, _name(obj)))
                continue
            spec = _dict(obj.get("spec"))
            path = "spec"
            if kind == "ResourceClaimTemplate":
                extra = sorted(set(_dict(spec.get("metadata"))) - {"labels", "annotations"})
                if extra:
                    report.error(
                        f"spec.metadata.{extra[0]}",
                        "only labels and annotations may be set in a template's metadata",
                    )
                spec, path = _dict(spec.get("spec")), "spec.spec"
            claim_requests.append(
                (report, _claim_spec(report, spec, path), f"{path}.devices.requests")
            )
            continue
        template = template_of(obj)
        if template is not None:
            prefix = "" if obj.get("kind") == "Pod" else _template_prefix(obj)
            _pod(
                report,
                obj,
                template,
                prefix=prefix,
                namespace=namespace,
                sources=sources,
                cluster=cluster is not None,
                where=document.source,
            )
    if cluster is not None:
        check = _ClusterCheck(cluster, input_classes)
        for report, name in class_reports:
            check.device_class(report, name)
        for report, requests, path in claim_requests:
            fitting = [(alts[0], check.request(report, alts)) for alts in requests if alts]
            check.claim(report, path, [(r, d) for r, d in fitting if d is not None])
    for report in reports:
        findings += report.findings
    return findings


def _template_prefix(obj: Mapping[str, Any]) -> str:
    return ".".join(template_path(dict(obj)) or ())


def has_errors(findings: Iterable[Finding]) -> bool:
    return any(f.severity == "error" for f in findings)


def format_findings(findings: Sequence[Finding]) -> str:
    """One line per finding, columns aligned: SEVERITY  OBJECT  FIELD  MESSAGE."""
    if not findings:
        return ""
    return align_columns([[f.severity, f.object, f.field, f.message] for f in findings], gap="  ")


def is_checked(obj: Mapping[str, Any]) -> bool:
    """Whether validate has rules for this kind (DRA objects, pods and workloads)."""
    return obj.get("kind") in _DEFINITIONS or template_of(dict(obj)) is not None


def summarize(findings: Sequence[Finding], *, documents: Sequence[Document]) -> str:
    """The stderr line after the findings: what was checked, counts per severity."""
    checked = sum(is_checked(d.object) for d in documents)
    skipped = len(documents) - checked
    what = (
        _plural(checked, "object")
        + " checked"
        + (f", {skipped} skipped (other kinds)" if skipped else "")
    )
    if not findings:
        return f"{what}: no problems found."
    counts = Counter(f.severity for f in findings)
    return f"{what}: {', '.join(_plural(counts[s], s) for s in SEVERITIES if counts[s])}."
