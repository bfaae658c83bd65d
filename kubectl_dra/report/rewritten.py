"""Reading the `kubectl-dra.io/rewritten` annotation, which anyone who can write a pod can forge.

The webhook's typed record (dracore.record) reads it strictly and with bounds; a value it
refuses (RecordError) shows in describe as an unreadable annotation for that pod alone.
"""

from __future__ import annotations

from collections import defaultdict

from dracore.classes import IMPLICIT_PREFIX
from dracore.record import SCHEDULER, ContainerRecord, RecordError, RewrittenRecord
from dracore.translate import REWRITTEN_ANNOTATION
from kubectl_dra.report.devices import annotations_of
from kubectl_dra.report.rows import LegacyRequest, Obj, Rewritten


def _record(pod: Obj) -> RewrittenRecord | None:
    """The pod's record, None without the annotation; RecordError when it cannot be read."""
    annotations = annotations_of(pod)
    if REWRITTEN_ANNOTATION not in annotations:
        return None
    return RewrittenRecord.from_annotation(annotations[REWRITTEN_ANNOTATION])


def _legacy(record: ContainerRecord) -> LegacyRequest:
    return LegacyRequest(record.container, record.resource, record.count)


def read_rewritten(pod: Obj) -> Rewritten | None:
    """The `kubectl-dra.io/rewritten` record of a pod, if our webhook rewrote it.

    An unreadable record gives a Rewritten with only `error` set, never an exception.
    """
    try:
        record = _record(pod)
    except RecordError as exc:
        return Rewritten(None, None, None, None, None, (), error=f"unreadable annotation: {exc}")
    if record is None:
        return None
    return Rewritten(
        policy=record.policy,
        sharing=record.sharing,
        claim=record.claim,
        template=record.template,
        resource_claim=record.resource_claim,
        containers=tuple(_legacy(c) for c in record.containers),
        path=record.path,
        route=record.route,
    )


def scheduler_originals(pod: Obj) -> dict[tuple[str, str], LegacyRequest]:
    """(container, implicit extended resource name) -> the legacy request renamed to it, for a
    pod on the scheduler's path; the scheduler's request mappings name only the new name."""
    try:
        record = _record(pod)
    except RecordError:
        return {}
    if record is None or record.path != SCHEDULER:
        return {}
    return {
        (c.container, IMPLICIT_PREFIX + c.device_class): _legacy(c)
        for c in record.containers
        if c.device_class
    }


def rewritten_originals(pod: Obj, pod_claim: str) -> dict[str | None, list[LegacyRequest]]:
    """Request name (None: every request) -> the legacy requests it replaced."""
    try:
        record = _record(pod)
    except RecordError:
        return {}  # read_rewritten reports it
    if record is None or record.claim != pod_claim:
        return {}
    originals: dict[str | None, list[LegacyRequest]] = defaultdict(list)
    for c in record.containers:
        if not c.count:
            continue
        for request in c.requests or [None]:
            originals[request].append(_legacy(c))
    return originals
