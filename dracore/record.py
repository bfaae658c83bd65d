"""The `kubectl-dra.io/rewritten` annotation: the one contract between the webhook and the plugin.

The webhook's rewrite builds a `RewrittenRecord` and stores `to_annotation()` on the pod;
`kubectl dra describe` reads it back with `from_annotation()`, and the webhook itself reads it
on UPDATE to know which node labels it translated. The annotation sits on a pod that its
author can edit, so reading is strict and bounded: anything that is not exactly a record of a
known version (size, nesting, types, unknown keys, counts outside int64) raises RecordError,
and callers show the record as unreadable instead of failing.

JSON form (version 2, the one written):
    {"version": 2, "path": "templates" | "scheduler", "route": "webhook" | "admission-policy",
     "policy": <policy digest>, "sharing": <strategy>,
     "containers": [{"container", "resource", "count", "requests"?, "class"?}],
     templates path only: "claim": <pod claim>, "template" | "resourceClaim": <name>,
     "nodeSelector"?: {<label>: <value>}, "nodeAffinity"?: [{"key", "operator", "values"}]}
`path` says who makes the pod's claim: the webhook's template or named claim (`templates`), or
the scheduler, after the legacy resource was renamed to a DeviceClass's implicit extended
resource name (`scheduler`, with the `class` per container). `route` says who wrote the record:
dra-webhook or the compiled MutatingAdmissionPolicy. `nodeSelector` and `nodeAffinity` are the
node-label terms the rewrite turned into CEL and took off the pod.

Version 1 had no `path`, `route` or `class`: a record without a claim was written by the
admission policies (scheduler path), any other by the webhook (templates). Records written
before versions existed have no `version` key and are read as version 1.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from dracore import jsonio
from dracore.errors import WebhookError, shown

VERSION: Final = 2
READABLE_VERSIONS: Final = (1, 2)
TEMPLATES: Final = "templates"
SCHEDULER: Final = "scheduler"
PATHS: Final = (TEMPLATES, SCHEDULER)
WEBHOOK_ROUTE: Final = "webhook"
ADMISSION_POLICY_ROUTE: Final = "admission-policy"
ROUTES: Final = (WEBHOOK_ROUTE, ADMISSION_POLICY_ROUTE)
# The API server's limit for all of a pod's annotations together: no real record is longer,
# and reading never costs more than this.
MAX_LENGTH: Final = 256 * 1024
MAX_COUNT: Final = 2**63 - 1


class RecordError(WebhookError):
    """The annotation is not a rewritten record this version can read."""


@dataclass(frozen=True, slots=True)
class ContainerRecord:
    """One legacy request the rewrite replaced, and the claim requests now serving it."""

    container: str
    resource: str
    count: int
    requests: tuple[str, ...] | None = None  # None: the whole claim (shared) or nothing (0)
    device_class: str | None = None  # scheduler path: the class the resource was renamed to


@dataclass(frozen=True, slots=True)
class NodeRequirement:
    """A required node-affinity expression on a GPU label, translated into CEL."""

    key: str
    operator: str
    values: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RewrittenRecord:
    policy: str
    sharing: str
    containers: tuple[ContainerRecord, ...]
    claim: str | None = None
    template: str | None = None
    resource_claim: str | None = None
    node_selector: tuple[tuple[str, str], ...] = ()
    node_affinity: tuple[NodeRequirement, ...] = ()
    path: str = TEMPLATES
    route: str = WEBHOOK_ROUTE

    def to_annotation(self) -> str:
        record: dict[str, Any] = {
            "version": VERSION,
            "path": self.path,
            "route": self.route,
            "policy": self.policy,
            "sharing": self.sharing,
            "containers": [_container_json(c) for c in self.containers],
        }
        for key, value in (
            ("claim", self.claim),
            ("template", self.template),
            ("resourceClaim", self.resource_claim),
        ):
            if value is not None:
                record[key] = value
        if self.node_selector:
            record["nodeSelector"] = dict(self.node_selector)
        if self.node_affinity:
            record["nodeAffinity"] = [
                {"key": r.key, "operator": r.operator, "values": list(r.values)}
                for r in self.node_affinity
            ]
        return jsonio.canonical_ascii(record)

    @classmethod
    def from_annotation(cls, text: object) -> RewrittenRecord:
        """Read an annotation value; RecordError (one line, saying what is wrong) otherwise."""
        if not isinstance(text, str):
            raise RecordError(f"not a string but {shown(text)}")
        if len(text) > MAX_LENGTH:
            raise RecordError(f"{len(text)} characters, more than a record can have ({MAX_LENGTH})")
        try:
            data = json.loads(text, parse_constant=_refuse_constant)
        except RecursionError:
            raise RecordError("nested too deeply to be a record") from None
        except ValueError as exc:  # JSONDecodeError, and integers of thousands of digits
            raise RecordError(f"not JSON: {shown(str(exc), 120)}") from None
        return _parse(data)


def _container_json(c: ContainerRecord) -> dict[str, Any]:
    item: dict[str, Any] = {"container": c.container, "resource": c.resource, "count": c.count}
    if c.requests is not None:
        item["requests"] = list(c.requests)
    if c.device_class is not None:
        item["class"] = c.device_class
    return item


def _refuse_constant(name: str) -> Any:
    raise RecordError(f"{name} is not a number a record holds")


_KEYS: Final = frozenset(
    {
        "version",
        "path",
        "route",
        "policy",
        "sharing",
        "containers",
        "claim",
        "template",
        "resourceClaim",
        "nodeSelector",
        "nodeAffinity",
    }
)


def _object(value: Any, where: str, allowed: frozenset[str]) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise RecordError(f"{where}: expected an object, got {shown(value)}")
    unknown = sorted(str(k) for k in value if k not in allowed)
    if unknown:
        raise RecordError(f"{where}: unknown field {shown(unknown[0])}")
    return value


def _string(value: Any, where: str, *, optional: bool = False) -> Any:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise RecordError(f"{where}: expected a string, got {shown(value)}")
    return value


def _items(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise RecordError(f"{where}: expected a list, got {shown(value)}")
    return value


def _parse(data: Any) -> RewrittenRecord:
    record = _object(data, "record", _KEYS)
    version = record.get("version", 1)
    if version not in READABLE_VERSIONS or isinstance(version, bool):
        readable = " and ".join(str(v) for v in READABLE_VERSIONS)
        raise RecordError(f"version {shown(version)} is not one this release reads ({readable})")
    if version == 1:
        for key in ("path", "route"):
            if key in record:
                raise RecordError(f"{key}: not a field of version 1 records (it came in version 2)")
        # What version 1 writers did: only the admission policies wrote records without a claim.
        written_by_policy = record.get("claim") is None
        path = SCHEDULER if written_by_policy else TEMPLATES
        route = ADMISSION_POLICY_ROUTE if written_by_policy else WEBHOOK_ROUTE
    else:
        path = _choice(record.get("path"), "path", PATHS)
        route = _choice(record.get("route"), "route", ROUTES)
        if path == SCHEDULER:
            # The scheduler makes the claim: a record naming one is not what either writer wrote.
            for key in ("claim", "template", "resourceClaim"):
                if key in record:
                    raise RecordError(f"{key}: a scheduler-path record names no claim")
    container_keys = {"container", "resource", "count", "requests"}
    if version != 1:
        container_keys.add("class")
    containers = []
    for i, raw in enumerate(_items(record.get("containers"), "containers")):
        where = f"containers[{i}]"
        item = _object(raw, where, frozenset(container_keys))
        count = item.get("count")
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_COUNT:
            raise RecordError(
                f"{where}.count: expected a whole number of devices, got {shown(count)}"
            )
        requests = None
        if path == SCHEDULER and version != 1 and "requests" in item:
            raise RecordError(f"{where}.requests: a scheduler-path record names no claim requests")
        if item.get("requests") is not None:
            requests = tuple(
                _string(r, f"{where}.requests[{j}]")
                for j, r in enumerate(_items(item["requests"], f"{where}.requests"))
            )
        containers.append(
            ContainerRecord(
                _string(item.get("container"), f"{where}.container"),
                _string(item.get("resource"), f"{where}.resource"),
                count,
                requests,
                _string(item.get("class"), f"{where}.class", optional=True),
            )
        )
    selector = record.get("nodeSelector") or {}
    if not isinstance(selector, dict):
        raise RecordError(f"nodeSelector: expected an object of labels, got {shown(selector)}")
    affinity = []
    for i, raw in enumerate(_items(record.get("nodeAffinity"), "nodeAffinity")):
        where = f"nodeAffinity[{i}]"
        item = _object(raw, where, frozenset({"key", "operator", "values"}))
        values = tuple(
            _string(v, f"{where}.values[{j}]")
            for j, v in enumerate(_items(item.get("values"), f"{where}.values"))
        )
        affinity.append(
            NodeRequirement(
                _string(item.get("key"), f"{where}.key"),
                _string(item.get("operator"), f"{where}.operator"),
                values,
            )
        )
    return RewrittenRecord(
        policy=_string(record.get("policy"), "policy"),
        sharing=_string(record.get("sharing"), "sharing"),
        containers=tuple(containers),
        claim=_string(record.get("claim"), "claim", optional=True),
        template=_string(record.get("template"), "template", optional=True),
        resource_claim=_string(record.get("resourceClaim"), "resourceClaim", optional=True),
        node_selector=tuple(
            (_string(k, "nodeSelector"), _string(v, f"nodeSelector[{shown(k)}]"))
            for k, v in selector.items()
        ),
        node_affinity=tuple(affinity),
        path=path,
        route=route,
    )


def _choice(value: Any, where: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise RecordError(f"{where}: {shown(value)} is not one of {', '.join(allowed)}")
    return str(value)
