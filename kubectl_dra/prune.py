"""`kubectl dra prune`, the pure part: which objects the webhook made are left over.

The webhook creates a ResourceClaimTemplate per pod shape (and, on request, a named
ResourceClaim shared by pods) and never deletes them: deleting is a controller's job, and the
webhook has no right to list or delete (see docs/prune.md). An object is left over when

- it carries the webhook's label (`app.kubernetes.io/managed-by: kubectl-dra`) and no owner:
  claims the controller-manager generates from our templates carry the label too, but they are
  owned by their pod and the garbage collector removes them with it;
- no pod in its namespace references it (`spec.resourceClaims[].resourceClaimTemplateName` or
  `resourceClaimName`), and, for a claim, nothing holds it (`status.reservedFor` is empty);
- it is older than the grace period: a template made for a pod being admitted exists before
  the pod does, and the webhook remembers for MIN_GRACE the templates it made or found, without
  asking the API server again (a template deleted within that time is not made again for the
  next pod of its shape);
- it is not being deleted already.

Timestamps that cannot be read count as new: an object is kept when in doubt.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from dracore.translate import MANAGED_BY, MANAGED_BY_LABEL

MANAGED_SELECTOR: Final = f"{MANAGED_BY_LABEL}={MANAGED_BY}"
# The webhook's memory of the templates it made (webhook/admission/decision.py, SeenCache).
MIN_GRACE: Final = timedelta(minutes=5)
DEFAULT_GRACE: Final = "1h"
_DURATION = re.compile(r"(?:(\d{1,6})d)?(?:(\d{1,6})h)?(?:(\d{1,6})m)?(?:(\d{1,6})s)?")


def parse_duration(text: str) -> timedelta:
    """`1h`, `90m`, `2d`, `1h30m`: ValueError for anything else (each part at most 6 digits)."""
    match = _DURATION.fullmatch(text)
    if not text or match is None:
        raise ValueError(f"{text!r} is not a duration like 90m, 1h, 1h30m or 2d")
    days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


def format_age(age: timedelta) -> str:
    """kubectl's short age: 45s, 12m, 5h, 3d."""
    seconds = int(age.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


@dataclass(frozen=True, slots=True)
class Leftover:
    """One object prune would delete, with what makes the deletion safe to attempt."""

    kind: str  # ResourceClaimTemplate | ResourceClaim
    namespace: str
    name: str
    uid: str
    resource_version: str
    age: timedelta

    @property
    def plural(self) -> str:
        return self.kind.lower() + "s"


@dataclass(frozen=True, slots=True)
class PrunePlan:
    leftovers: tuple[Leftover, ...]
    in_use: int  # ours, but referenced or held
    too_new: int  # ours and unused, but within the grace period


def plan_prune(
    *,
    templates: Iterable[Mapping[str, Any]],
    claims: Iterable[Mapping[str, Any]],
    pods: Iterable[Mapping[str, Any]],
    now: datetime,
    grace: timedelta,
) -> PrunePlan:
    """The leftovers among `templates` and `claims`, given the `pods` that exist `now`."""
    template_refs: set[tuple[str, str]] = set()
    claim_refs: set[tuple[str, str]] = set()
    for pod in pods:
        namespace = _metadata(pod).get("namespace") or ""
        spec = pod.get("spec")
        for ref in _objects(spec.get("resourceClaims") if isinstance(spec, Mapping) else None):
            if isinstance(ref.get("resourceClaimTemplateName"), str):
                template_refs.add((namespace, ref["resourceClaimTemplateName"]))
            if isinstance(ref.get("resourceClaimName"), str):
                claim_refs.add((namespace, ref["resourceClaimName"]))
    leftovers: list[Leftover] = []
    in_use = too_new = 0
    for kind, objects, references in (
        ("ResourceClaimTemplate", templates, template_refs),
        ("ResourceClaim", claims, claim_refs),
    ):
        for obj in objects:
            metadata = _metadata(obj)
            if not _ours(metadata):
                continue
            key = (metadata.get("namespace") or "", metadata.get("name") or "")
            if key in references or (kind == "ResourceClaim" and _held(obj)):
                in_use += 1
                continue
            age = _age(metadata, now)
            if age is None or age < grace:
                too_new += 1
                continue
            leftovers.append(
                Leftover(
                    kind,
                    key[0],
                    key[1],
                    str(metadata.get("uid") or ""),
                    str(metadata.get("resourceVersion") or ""),
                    age,
                )
            )
    leftovers.sort(key=lambda o: (o.namespace, o.kind, o.name))
    return PrunePlan(tuple(leftovers), in_use, too_new)


def _metadata(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata = obj.get("metadata")
    return metadata if isinstance(metadata, Mapping) else {}


def _objects(value: Any) -> Sequence[Mapping[str, Any]]:
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def _ours(metadata: Mapping[str, Any]) -> bool:
    """Made by the webhook, not owned (generated claims go with their pod), not being deleted."""
    labels = metadata.get("labels")
    return (
        isinstance(labels, Mapping)
        and labels.get(MANAGED_BY_LABEL) == MANAGED_BY
        and not metadata.get("ownerReferences")
        and not metadata.get("deletionTimestamp")
        and bool(metadata.get("name"))
    )


def _held(claim: Mapping[str, Any]) -> bool:
    status = claim.get("status")
    return isinstance(status, Mapping) and bool(status.get("reservedFor"))


def _age(metadata: Mapping[str, Any], now: datetime) -> timedelta | None:
    created = metadata.get("creationTimestamp")
    if not isinstance(created, str) or len(created) > 40:
        return None
    try:
        when = datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return now - when
