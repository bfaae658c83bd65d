"""Turning objects into text (pure): YAML streams, JSON Lists, and the describe views.

Tables look like kubectl's (upper-case headers, space-aligned columns, `-` for nothing, no
colour), so they survive pipes into `grep`/`awk`. `-o json|yaml` of a describe view is
`{apiVersion: kubectl-dra.io/v1alpha1, kind: <View>List, items: [...]}` (the cluster view:
`kind: ClusterReport` with `nodes` and `totals`): the report dataclasses with camelCase keys,
documented in docs/describe.md. Keys are only ever added, never renamed, within v1alpha1.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import yaml

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
    Sharing,
)


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
NONE = "-"
UNREADABLE = "(unreadable annotation)"
# Properties worth a key in -o json/yaml next to the dataclass fields.
_COMPUTED: dict[type, tuple[str, ...]] = {
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


# Characters a terminal acts on rather than shows: C0 and C1 controls, DEL, and the Unicode
# marks that reorder or break lines. Names and annotations come from pod authors.
_UNSAFE: Final = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028-\u202e\u2066-\u2069]")
MAX_CELL: Final = 200  # characters; a cell longer than any Kubernetes name is cut


def safe_cell(text: str) -> str:
    """`text` as it may reach a terminal: every control character escaped (`\x1b`)."""
    return _UNSAFE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def short_cell(text: str) -> str:
    """At most MAX_CELL characters: a table cell longer than any Kubernetes name is cut."""
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 3] + "..."


def align_columns(rows: Sequence[Sequence[str]], *, gap: str) -> str:
    """Rows as lines, each column padded to its widest cell and joined by `gap`.

    Every cell goes through safe_cell: tables show data that pod authors wrote.
    """
    rows = [[safe_cell(str(cell)) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = (
        gap.join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )
    return "\n".join(lines) + "\n"


def format_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """kubectl's layout: upper-case headers, columns padded to the widest cell plus 3 spaces."""
    return align_columns(
        [list(headers), *([short_cell(safe_cell(cell)) or NONE for cell in row] for row in rows)],
        gap="   ",
    )


def _join(values: Iterable[object]) -> str:
    return ",".join(map(str, values)) or NONE


def _sharing(sharing: Sharing | None, *, wide: bool) -> str:
    if sharing is None:
        return NONE
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
    cells += [_sharing(row.sharing, wide=wide)]
    return cells


def _device_headers(*, wide: bool) -> list[str]:
    if wide:
        return ["NODE", "DEVICE", "DRIVER", "POOL", "MODEL", "UUID", "MEMORY", "SHARING"]
    return ["NODE", "DEVICE", "MODEL", "SHARING"]


def render_pods(reports: Sequence[PodReport], *, wide: bool, namespaces: bool) -> str:
    """One row per pod claim request. ORIGINAL (the legacy request) shows when a pod has one."""
    original = wide or any(
        p.rewritten or any(r.original for c in p.claims for r in c.requests) for p in reports
    )
    headers = [*(["NAMESPACE"] if namespaces else []), "POD", "CLAIM", "ORIGIN"]
    headers += [*(["RESOURCECLAIM"] if wide else []), "STATE", "REQUEST", "CONTAINERS"]
    headers += [*_device_headers(wide=wide), "SHARED-WITH", *(["ORIGINAL"] if original else [])]
    rows = []
    for pod in reports:
        lead = [*([pod.namespace] if namespaces else []), pod.name]
        unreadable = pod.rewritten is not None and pod.rewritten.error is not None
        if not pod.claims:  # rewritten, but no device left to ask for (all counts 0)
            empty = [*lead, *[NONE] * (len(headers) - len(lead))]
            if original and pod.rewritten:
                empty[-1] = UNREADABLE if unreadable else _join(pod.rewritten.containers)
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
                    ]
                )
    return format_table(headers, rows)


def _original(row: RequestRow | None, *, unreadable: bool) -> str:
    if row is not None and row.original:
        return _join(row.original)  # a KEP-5004 claim's mapping is still readable
    return UNREADABLE if unreadable else NONE


def render_claims(reports: Sequence[ClaimReport], *, wide: bool, namespaces: bool) -> str:
    """One row per claim request, with the claim's consumers (reservedFor)."""
    headers = [*(["NAMESPACE"] if namespaces else []), "CLAIM", "ORIGIN", "STATE", "REQUEST"]
    headers += [*(["CLASS"] if wide else []), *_device_headers(wide=wide)]
    headers += ["RESERVED-FOR", "SHARED-WITH", *(["OWNER"] if wide else [])]
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
    return format_table(headers, rows)


def _model_rows(models: Iterable[ModelCount]) -> list[list[str]]:
    return [[m.model, str(m.total), str(m.allocated), str(m.free)] for m in models]


def render_nodes(reports: Sequence[NodeReport], *, wide: bool) -> str:
    """Devices by model per node, then every device with its holders."""
    summary = format_table(
        ["NODE", "MODEL", "TOTAL", "ALLOCATED", "FREE"],
        ([n.node, *row] for n in reports for row in _model_rows(n.models)),
    )
    headers = ["NODE", "DEVICE", *(["DRIVER", "POOL"] if wide else []), "MODEL", "UUID"]
    headers += ["MEMORY", "STATE", "CLAIMS", "PODS"]
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
    return summary + "\n" + format_table(headers, rows)


def render_cluster(report: ClusterReport, *, wide: bool) -> str:
    """One line per node (per node and model with wide), then totals by model."""
    if wide:
        nodes = format_table(
            ["NODE", "MODEL", "TOTAL", "ALLOCATED", "FREE"],
            ([n.node, *row] for n in report.nodes for row in _model_rows(n.models)),
        )
    else:
        nodes = format_table(
            ["NODE", "TOTAL", "ALLOCATED", "FREE", "MODELS (TOTAL/ALLOCATED/FREE)"],
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
        )
    # Physical units per node (a GPU and its MIG slices count once), not the model rows' sum.
    total = sum(n.total for n in report.nodes)
    allocated = sum(n.allocated for n in report.nodes)
    totals = format_table(
        ["MODEL", "TOTAL", "ALLOCATED", "FREE"],
        [
            *_model_rows(report.totals),
            ["(all)", str(total), str(allocated), str(total - allocated)],
        ],
    )
    return nodes + "\n" + totals


def render_namespaces(usage: Sequence[NamespaceUsage]) -> str:
    return format_table(
        ["NAMESPACE", "MODEL", "DEVICES", "CLAIMS", "PODS"],
        ([u.namespace, u.model, str(u.devices), str(u.claims), str(u.pods)] for u in usage),
    )
