"""Turning objects into text (pure): YAML streams, JSON Lists, and the describe views.

Tables look like kubectl's (upper-case headers, space-aligned columns, `-` for nothing, no
colour), so they survive pipes into `grep`/`awk`; each view declares its columns with a priority
and table.py fits them to the terminal (`-o wide`: every column, no width limit). `-o json|yaml` of a describe view is
`{apiVersion: kubectl-dra.io/v1alpha1, kind: <View>List, items: [...]}` (the cluster view:
`kind: ClusterReport` with `nodes` and `totals`): the report dataclasses with camelCase keys,
documented in docs/describe.md. Keys are only ever added, never renamed, within v1alpha1.
"""

from __future__ import annotations

import dataclasses
import json
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import yaml

from dracore.capacity import Capacity
from kubectl_dra.report import (
    ClaimReport,
    ClusterReport,
    ModelCount,
    NamespaceUsage,
    NodeDevice,
    NodeReport,
    PodClaim,
    PodReport,
    RequestRow,
    Rewritten,
    Sharing,
)
from kubectl_dra.report.utilization import Usage, Utilization
from kubectl_dra.table import EMPTY, MIN_WRAP, Column, format_table, safe_cell

__all__ = ["Column", "format_table", "safe_cell"]  # the table layout, for audit and validate


class _Dumper(yaml.SafeDumper):
    """Block-style YAML that keeps key order and never emits anchors."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str_presenter(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str_presenter)


def to_yaml(obj: Any) -> str:
    return yaml.dump(obj, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120)


def to_yaml_stream(objects: Sequence[Any]) -> str:
    return "---\n".join(to_yaml(obj) for obj in objects)


def to_json(obj: Any) -> str:
    return json.dumps(obj, indent=2) + "\n"


def to_json_list(objects: Sequence[Any]) -> str:
    return to_json({"apiVersion": "v1", "kind": "List", "items": list(objects)})


# --- describe: tables and documents -----------------------------------------------------------

DESCRIBE_API_VERSION = "kubectl-dra.io/v1alpha1"
NONE = EMPTY
UNREADABLE = "(unreadable annotation)"
# Properties worth a key in -o json/yaml next to the dataclass fields.
_COMPUTED: dict[type, tuple[str, ...]] = {
    Capacity: ("free",),
    ModelCount: ("free",),
    NodeReport: ("total", "allocated", "free"),
    NodeDevice: ("allocated",),
}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.capitalize() for word in rest)


def to_plain(value: Any) -> Any:
    """Report dataclasses as JSON-ready data: camelCase keys, tuples as lists, None kept."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        data = {_camel(f.name): to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        for name in _COMPUTED.get(type(value), ()):
            data[_camel(name)] = getattr(value, name)
        return data
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    return value


def describe_document(kind: str, items: Sequence[Any]) -> dict[str, Any]:
    """The stable -o json/yaml envelope of a describe view (see docs/describe.md)."""
    return {"apiVersion": DESCRIBE_API_VERSION, "kind": kind, "items": to_plain(list(items))}


def cluster_document(report: ClusterReport) -> dict[str, Any]:
    return {"apiVersion": DESCRIBE_API_VERSION, "kind": "ClusterReport", **to_plain(report)}


def format_document(document: Mapping[str, Any], output: str) -> str:
    return to_json(document) if output == "json" else to_yaml(dict(document))


def align_columns(rows: Sequence[Sequence[str]], *, gap: str, width: int | None = None) -> str:
    """Rows without headers, columns aligned; with a width, the last column (prose) wraps."""
    if not rows:
        return ""
    count = len(rows[0])
    columns = [Column("", wrap=index == count - 1) for index in range(count)]
    return format_table(columns, rows, width=width, gap=gap, headers=False)


def _join(values: Iterable[object]) -> str:
    return ",".join(map(str, values)) or NONE


DRIVER_DEFAULT = "driver default"


def _sharing(sharing: Sharing | None, *, wide: bool) -> str:
    if sharing is None:
        return DRIVER_DEFAULT
    return f"{sharing.strategy} ({sharing.source})" if wide and sharing.source else sharing.strategy


def _origin(claim: PodClaim) -> str:
    return f"{claim.origin}/{claim.source}" if claim.source else claim.origin


def _device_cells(row: RequestRow | None, *, wide: bool) -> list[str]:
    if row is None:
        return [NONE] * (8 if wide else 4)
    cells = [row.node or NONE, row.device or NONE]
    if wide:
        cells += [row.driver or NONE, row.pool or NONE]
    cells += [row.model or NONE]
    if wide:
        cells += [row.uuid or NONE, row.memory or NONE]
    cells += [_sharing(row.sharing, wide=wide) if row.device or row.sharing else NONE]
    return cells


# Priorities: 0 always shows; when a table is too wide for the terminal, the highest number
# drops first. -o wide shows every column, without a width limit.
_NAMESPACE = Column("NAMESPACE")


def _device_columns(*, wide: bool) -> list[Column]:
    columns = [Column("NODE", priority=1), Column("DEVICE")]
    if wide:
        columns += [Column("DRIVER"), Column("POOL")]
    columns += [Column("MODEL", priority=1)]
    if wide:
        columns += [Column("UUID"), Column("MEMORY")]
    return [*columns, Column("SHARING", priority=2)]


def _limit(width: int | None, *, wide: bool) -> int | None:
    return None if wide else width


def render_pods(
    reports: Sequence[PodReport], *, wide: bool, namespaces: bool, width: int | None = None
) -> str:
    """One row per pod claim request. ORIGINAL (the legacy request) shows when a pod has one."""
    original = wide or any(
        p.rewritten or any(r.original for c in p.claims for r in c.requests) for p in reports
    )
    columns = [*([_NAMESPACE] if namespaces else []), Column("POD"), Column("CLAIM", priority=2)]
    columns += [Column("ORIGIN", priority=4), *([Column("RESOURCECLAIM")] if wide else [])]
    columns += [Column("STATE"), Column("REQUEST", priority=2), Column("CONTAINERS", priority=3)]
    columns += [*_device_columns(wide=wide), Column("SHARED-WITH", priority=4)]
    columns += [Column("ORIGINAL", priority=3)] if original else []
    # Who makes the claim of a rewritten pod: the webhook's template, or the scheduler.
    columns += [Column("PATH", priority=4)] if original else []
    rows = []
    for pod in reports:
        lead = [*([pod.namespace] if namespaces else []), pod.name]
        path = [_path(pod, wide=wide)] if original else []
        unreadable = pod.rewritten is not None and pod.rewritten.error is not None
        if not pod.claims:  # rewritten, but no device left to ask for (all counts 0)
            empty = [*lead, *[NONE] * (len(columns) - len(lead))]
            if original and pod.rewritten:
                empty[-2] = UNREADABLE if unreadable else _join(pod.rewritten.containers)
                empty[-1] = path[0]
            rows.append(empty)
        for claim in pod.claims:
            head = [*lead, claim.name or NONE, _origin(claim)]
            head += [*([claim.claim or NONE] if wide else []), claim.state]
            for row in claim.requests or (None,):
                rows.append(
                    [
                        *head,
                        row.request if row else NONE,
                        _join(row.containers) if row else NONE,
                        *_device_cells(row, wide=wide),
                        _join(row.shared_with) if row else NONE,
                        *([_original(row, unreadable=unreadable)] if original else []),
                        *path,
                    ]
                )
    return format_table(columns, rows, width=_limit(width, wide=wide))


def _path(pod: PodReport, *, wide: bool) -> str:
    """`scheduler` or `templates`; wide, with who wrote the record (`scheduler/webhook`)."""
    rewritten = pod.rewritten
    if rewritten is None or rewritten.path is None:
        return NONE
    return f"{rewritten.path}/{rewritten.route}" if wide else rewritten.path


def _original(row: RequestRow | None, *, unreadable: bool) -> str:
    if row is not None and row.original:
        return _join(row.original)  # a KEP-5004 claim's mapping is still readable
    return UNREADABLE if unreadable else NONE


def render_claims(
    reports: Sequence[ClaimReport], *, wide: bool, namespaces: bool, width: int | None = None
) -> str:
    """One row per claim request, with the claim's consumers (reservedFor)."""
    columns = [*([_NAMESPACE] if namespaces else []), Column("CLAIM")]
    columns += [Column("ORIGIN", priority=4), Column("STATE"), Column("REQUEST", priority=2)]
    columns += [*([Column("CLASS")] if wide else []), *_device_columns(wide=wide)]
    columns += [Column("RESERVED-FOR", priority=1), Column("SHARED-WITH", priority=4)]
    columns += [Column("OWNER")] if wide else []
    rows = []
    for claim in reports:
        head = [*([claim.namespace] if namespaces else []), claim.name, claim.origin, claim.state]
        for row in claim.requests or (None,):
            rows.append(
                [
                    *head,
                    row.request if row else NONE,
                    *([(row.device_class or NONE) if row else NONE] if wide else []),
                    *_device_cells(row, wide=wide),
                    _join(claim.reserved_for),
                    _join(row.shared_with) if row else NONE,
                    *([claim.owner or NONE] if wide else []),
                ]
            )
    return format_table(columns, rows, width=_limit(width, wide=wide))


def _model_rows(models: Iterable[ModelCount]) -> list[list[str]]:
    return [[m.model, str(m.total), str(m.allocated), str(m.free)] for m in models]


_COUNT_COLUMNS = [Column("MODEL"), Column("TOTAL"), Column("ALLOCATED"), Column("FREE")]


def render_nodes(reports: Sequence[NodeReport], *, wide: bool, width: int | None = None) -> str:
    """Devices by model per node, then every device with its holders."""
    limit = _limit(width, wide=wide)
    summary = format_table(
        [Column("NODE"), *_COUNT_COLUMNS],
        ([n.node, *row] for n in reports for row in _model_rows(n.models)),
        width=limit,
    )
    columns = [Column("NODE"), Column("DEVICE")]
    columns += [Column("DRIVER"), Column("POOL")] if wide else []
    columns += [Column("MODEL", priority=1), Column("UUID", priority=3)]
    columns += [Column("MEMORY", priority=2), Column("STATE"), Column("CLAIMS", priority=1)]
    columns += [Column("PODS", priority=2)]
    rows = []
    for node in reports:
        for d in node.devices:
            dev = d.device
            rows.append(
                [
                    node.node,
                    dev.name,
                    *([dev.driver, dev.pool] if wide else []),
                    dev.model,
                    dev.uuid or NONE,
                    dev.memory or NONE,
                    "allocated" if d.allocated else "free",
                    _join(d.claims),
                    _join(d.pods),
                ]
            )
    return summary + "\n" + format_table(columns, rows, width=limit)


def render_cluster(report: ClusterReport, *, wide: bool, width: int | None = None) -> str:
    """One line per node (per node and model with wide), then totals by model."""
    limit = _limit(width, wide=wide)
    if wide:
        nodes = format_table(
            [Column("NODE"), *_COUNT_COLUMNS],
            ([n.node, *row] for n in report.nodes for row in _model_rows(n.models)),
        )
    else:
        nodes = format_table(
            [
                Column("NODE"),
                *_COUNT_COLUMNS[1:],
                Column("MODELS (TOTAL/ALLOC/FREE)", wrap=True),
            ],
            (
                [
                    n.node,
                    str(n.total),
                    str(n.allocated),
                    str(n.free),
                    ", ".join(f"{m.model} {m.total}/{m.allocated}/{m.free}" for m in n.models),
                ]
                for n in report.nodes
            ),
            width=limit,
        )
    # Physical units per node (a GPU and its MIG slices count once), not the model rows' sum.
    total = sum(n.total for n in report.nodes)
    allocated = sum(n.allocated for n in report.nodes)
    totals = format_table(
        _COUNT_COLUMNS,
        [
            *_model_rows(report.totals),
            ["(all)", str(total), str(allocated), str(total - allocated)],
        ],
        width=limit,
    )
    return nodes + "\n" + totals


def render_namespaces(usage: Sequence[NamespaceUsage], *, width: int | None = None) -> str:
    return format_table(
        ["NAMESPACE", "MODEL", "DEVICES", "CLAIMS", "PODS"],
        ([u.namespace, u.model, str(u.devices), str(u.claims), str(u.pods)] for u in usage),
        width=width,
    )


# --- describe pod NAME: one vertical block per pod, as `kubectl describe` prints -------------

_SHARING_SOURCES: dict[str, str] = {"FromClaim": "the claim", "FromClass": "the DeviceClass"}


def _sharing_text(sharing: Sharing | None) -> str:
    if sharing is None:
        return DRIVER_DEFAULT
    source = _SHARING_SOURCES.get(sharing.source, sharing.source)
    return f"{sharing.strategy} (from {source})" if source else sharing.strategy


class _Block:
    """`Label:  value` lines, values aligned per level and wrapped under themselves."""

    def __init__(self, width: int | None) -> None:
        self.width = width
        self.lines: list[str] = []

    def fields(self, pairs: Iterable[tuple[str, object]], *, indent: int = 0) -> None:
        shown = [(label, value) for label, value in pairs if value is not None]
        pad = max((len(label) for label, _ in shown), default=0) + 3
        for label, value in shown:
            lead = " " * indent + f"{label}:".ljust(pad)
            text = safe_cell(str(value)) or NONE
            room = None if self.width is None else self.width - len(lead)
            if room is None or room < MIN_WRAP or len(text) <= room:
                self.lines.append(lead + text)
                continue
            wrapped = textwrap.wrap(text, room, break_on_hyphens=False) or [text]
            self.lines.append(lead + wrapped[0])
            self.lines += [" " * len(lead) + line for line in wrapped[1:]]

    def heading(self, text: str, *, indent: int) -> None:
        self.lines.append(" " * indent + safe_cell(text) + ":")


def _request_fields(row: RequestRow) -> list[tuple[str, object]]:
    if row.device is None:  # not allocated yet
        return [
            ("Class", row.device_class),
            ("Count", row.count),
            ("Sharing", _sharing_text(row.sharing) if row.device_class else None),
            ("Containers", _join(row.containers)),
            ("Original", _join(row.original) if row.original else None),
        ]
    return [
        ("Driver", row.driver),
        ("Pool", row.pool),
        ("Device", row.device),
        ("Node", row.node),
        ("Model", row.model or NONE),
        ("UUID", row.uuid or NONE),
        ("Memory", row.memory or NONE),
        ("Sharing", _sharing_text(row.sharing)),
        ("Containers", _join(row.containers)),
        ("Original", _join(row.original) if row.original else None),
        ("Other holders", _join(row.shared_with) if row.shared_with else "<none>"),
    ]


def _claim_state(claim: PodClaim) -> str:
    if claim.state == "reserved":
        return f"reserved (by {', '.join(claim.reserved_for)})"
    return claim.state


def _path_line(rewritten: Rewritten | None) -> str | None:
    if rewritten is None or rewritten.path is None:
        return None
    maker = "the scheduler" if rewritten.path == "scheduler" else "a template or named claim"
    return f"{rewritten.path} (claim made by {maker}; rewritten by {rewritten.route})"


def render_pod_blocks(reports: Sequence[PodReport], *, width: int | None = None) -> str:
    """`describe pod NAME`: per pod its place and phase (and while pending, the scheduler's
    reason), then per claim how it was made and its state, then per request the device."""
    blocks = []
    for pod in reports:
        block = _Block(width)
        rewritten = pod.rewritten
        original = None
        if rewritten is not None:
            original = UNREADABLE if rewritten.error else _join(rewritten.containers)
        block.fields(
            [
                ("Name", pod.name),
                ("Namespace", pod.namespace),
                ("Node", pod.node or "<none>"),
                ("Phase", pod.phase or "<unknown>"),
                ("Scheduling", pod.unscheduled if pod.phase in (None, "Pending") else None),
                ("Rewritten from", original),
                ("Path", _path_line(rewritten)),
            ]
        )
        block.lines.append("Claims:" + ("" if pod.claims else "  <none>"))
        for claim in pod.claims:
            block.heading(claim.name or "(extended resource, KEP-5004)", indent=2)
            block.fields(
                [
                    ("Made from", _origin(claim).replace("/", " ", 1)),
                    ("ResourceClaim", claim.claim or "<not created yet>"),
                    ("State", _claim_state(claim)),
                ],
                indent=4,
            )
            for row in claim.requests:
                block.heading(f"Request {row.request}", indent=4)
                block.fields(_request_fields(row), indent=6)
        blocks.append("\n".join(block.lines) + "\n")
    return "\n".join(blocks)


# --- top: devices allocated, free and total per node and model --------------------------------

ALL_GPUS = "(physical GPUs)"
ALL_NODES = "(all)"


def _percent(part: int, whole: int) -> str:
    return f"{round(100 * part / whole)}%" if whole else NONE


def _usage_cells(node: str, usage: Usage) -> list[str]:
    return [
        node,
        usage.model,
        usage.profile or NONE,
        str(usage.allocated),
        _percent(usage.allocated, usage.total),
        str(usage.free),
        str(usage.total),
    ]


def _gpu_cells(node: str, gpus: Capacity) -> list[str]:
    used = _percent(gpus.allocated, gpus.total)
    return [node, ALL_GPUS, NONE, str(gpus.allocated), used, str(gpus.free), str(gpus.total)]


def render_utilization(report: Utilization, *, width: int | None = None) -> str:
    """Per node its physical GPUs, then its devices by model and MIG profile; then the same for
    all nodes together (NODE `(all)`)."""
    columns = [Column("NODE"), Column("MODEL"), Column("PROFILE"), Column("ALLOCATED")]
    columns += [Column("%ALLOCATED", priority=1), Column("FREE"), Column("TOTAL")]
    rows = []
    for node in report.nodes:
        rows.append(_gpu_cells(node.node, node.gpus))
        rows += [_usage_cells(node.node, usage) for usage in node.models]
    rows.append(_gpu_cells(ALL_NODES, report.gpus))
    rows += [_usage_cells(ALL_NODES, usage) for usage in report.totals]
    return format_table(columns, rows, width=width)


def utilization_document(report: Utilization) -> dict[str, Any]:
    return {"apiVersion": DESCRIBE_API_VERSION, "kind": "Utilization", **to_plain(report)}
