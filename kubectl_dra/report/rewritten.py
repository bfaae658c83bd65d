"""Reading the `kubectl-dra.io/rewritten` annotation, which anyone who can write a pod can forge.

The record is parsed with bounds (depth, integer size, no NaN) and checked field by field; any
surprise makes the whole record unreadable (`UnreadableAnnotation`), which the pods view shows
as such for that pod alone. Nothing here trusts a type it has not checked.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from kubectl_dra.documents import loads_bounded
from kubectl_dra.report.devices import annotations_of
from kubectl_dra.report.rows import LegacyRequest, Obj, Rewritten
from webhook.core.translate import REWRITTEN_ANNOTATION

MAX_COUNT: Final = 2**63 - 1  # counts are int64 in the API
_TEXT_FIELDS: Final = ("policy", "sharing", "claim", "template", "resourceClaim")


class UnreadableAnnotation(ValueError):
    """The annotation is not a record our webhook writes; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class RewrittenRecord:
    rewritten: Rewritten
    requests: tuple[tuple[str, ...], ...]  # per container: the claim requests it uses


def _text(record: Mapping[str, Any], key: str) -> str | None:
    value = record.get(key)
    if value is not None and not isinstance(value, str):
        raise UnreadableAnnotation(f"{key} is not a string")
    return value


def _container(raw: Any, index: int) -> tuple[LegacyRequest, tuple[str, ...]]:
    if not isinstance(raw, Mapping):
        raise UnreadableAnnotation(f"containers[{index}] is not an object")
    name, resource, count = raw.get("container"), raw.get("resource"), raw.get("count")
    if not isinstance(name, str) or not isinstance(resource, str):
        raise UnreadableAnnotation(f"containers[{index}] needs container and resource strings")
    if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= MAX_COUNT:
        raise UnreadableAnnotation(f"containers[{index}].count is not a count")
    requests = raw.get("requests") or []
    if not isinstance(requests, list) or not all(isinstance(r, str) for r in requests):
        raise UnreadableAnnotation(f"containers[{index}].requests is not a list of names")
    return LegacyRequest(name, resource, count), tuple(requests)


def parse_rewritten(raw: Any) -> RewrittenRecord:
    """The record in an annotation value; UnreadableAnnotation for anything else."""
    if not isinstance(raw, str):
        raise UnreadableAnnotation("the value is not a string")
    try:
        record = loads_bounded(raw)
    except ValueError as exc:  # json.JSONDecodeError too
        raise UnreadableAnnotation(f"not JSON: {' '.join(str(exc).split())[:100]}") from None
    if not isinstance(record, Mapping):
        raise UnreadableAnnotation("not a JSON object")
    texts = {key: _text(record, key) for key in _TEXT_FIELDS}
    raw_containers = record.get("containers") or []
    if not isinstance(raw_containers, list):
        raise UnreadableAnnotation("containers is not a list")
    containers = [_container(c, i) for i, c in enumerate(raw_containers)]
    return RewrittenRecord(
        Rewritten(
            policy=texts["policy"],
            sharing=texts["sharing"],
            claim=texts["claim"],
            template=texts["template"],
            resource_claim=texts["resourceClaim"],
            containers=tuple(legacy for legacy, _ in containers),
        ),
        tuple(requests for _, requests in containers),
    )


def read_rewritten(pod: Obj) -> Rewritten | None:
    """The `kubectl-dra.io/rewritten` record of a pod, if our webhook rewrote it.

    An unreadable record gives a Rewritten with only `error` set, never an exception.
    """
    annotations = annotations_of(pod)
    if REWRITTEN_ANNOTATION not in annotations:
        return None
    try:
        return parse_rewritten(annotations[REWRITTEN_ANNOTATION]).rewritten
    except UnreadableAnnotation as exc:
        return Rewritten(None, None, None, None, None, (), error=f"unreadable annotation: {exc}")


def rewritten_originals(pod: Obj, pod_claim: str) -> dict[str | None, list[LegacyRequest]]:
    """Request name (None: every request) -> the legacy requests it replaced."""
    annotations = annotations_of(pod)
    if REWRITTEN_ANNOTATION not in annotations:
        return {}
    try:
        record = parse_rewritten(annotations[REWRITTEN_ANNOTATION])
    except UnreadableAnnotation:
        return {}  # read_rewritten reports it
    if record.rewritten.claim != pod_claim:
        return {}
    originals: dict[str | None, list[LegacyRequest]] = defaultdict(list)
    for legacy, requests in zip(record.rewritten.containers, record.requests, strict=True):
        if not legacy.count:
            continue
        for request in requests or (None,):
            originals[request].append(legacy)
    return originals
