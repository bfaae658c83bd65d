"""DeviceClasses on the scheduler's extended-resource path (KEP-5004).

Shared by `kubectl dra validate` (the rule `check_extended_resource`, registered in `rules`)
and `kubectl dra classes --cluster` (`compare_classes`):

- `spec.extendedResourceName` must be a name the API server accepts: an extended resource
  name outside the kubernetes.io domains;
- the scheduler serves a name from one class only: the newest, and on a tie (timestamps have
  whole seconds) the first by name. Two classes claiming one name are reported, as an error
  for the one that loses and a warning for the one that wins;
- a class with a sharing config that claims a name hands shared devices to every pod asking
  for that name (a warning, unless the name says so as the device plugin's `<name>.shared`
  did: the policy reaches its other sharing classes by their implicit names);
- a class name longer than 63 characters has no implicit name a pod could write;
- against the cluster (`compare_classes`): a generated class that is missing or different,
  a class of ours the policy no longer makes, and a class whose selectors match no device.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from dracore.classes import GeneratedClass, implicit_resource_name, is_claimable_resource_name
from dracore.translate import MANAGED_BY, MANAGED_BY_LABEL
from kubectl_dra.celcheck.matching import DeviceMatcher
from kubectl_dra.validate.findings import Finding, Report, as_dict, as_list, metadata_of, name_of

# The device plugin's name for a shared resource (`nvidia.com/gpu.shared`): a class with a
# sharing config may claim such a name without surprising anyone.
SHARED_SUFFIX: Final = ".shared"
NOT_CREATED: Final = "~"  # sorts after every timestamp: a class about to be applied is the newest


def claimed_name(obj: Mapping[str, Any]) -> str | None:
    claimed = as_dict(obj.get("spec")).get("extendedResourceName")
    return claimed if isinstance(claimed, str) and claimed else None


def class_selectors(device_classes: Iterable[Mapping[str, Any]]) -> dict[str, list[str]]:
    """Each class's CEL selector expressions, by class name (entries of another shape skipped)."""
    return {
        name_of(obj): [
            expression
            for selector in as_list(as_dict(obj.get("spec")).get("selectors"))
            if isinstance(
                expression := as_dict(as_dict(selector).get("cel")).get("expression"), str
            )
        ]
        for obj in device_classes
    }


def _created(obj: Mapping[str, Any]) -> str:
    stamp = metadata_of(obj).get("creationTimestamp")
    return stamp if isinstance(stamp, str) and stamp else NOT_CREATED


def serving_class(claimants: Iterable[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The class the scheduler uses for a name several classes claim: newest, then first by name."""
    return min(claimants, key=lambda c: (_invert(_created(c)), name_of(c)))


def _invert(stamp: str) -> tuple[int, ...]:
    """A key that sorts newer timestamps first (RFC 3339 UTC strings compare as text)."""
    return tuple(-ord(ch) for ch in stamp)


def _conflicts(report: Report, obj: Mapping[str, Any], others: Sequence[Mapping[str, Any]]) -> None:
    claimed = claimed_name(obj)
    if claimed is None:
        return
    rivals = [o for o in others if claimed_name(o) == claimed and name_of(o) != name_of(obj)]
    if not rivals:
        return
    winner = serving_class([obj, *rivals])
    names = ", ".join(sorted(name_of(r) for r in rivals))
    when = "" if _created(winner) == NOT_CREATED else f", created {_created(winner)}"
    rule = f"the scheduler serves {claimed} from one class only, the newest (on a tie, the first by name)"
    if winner is obj:
        report.warning(
            "spec.extendedResourceName",
            f"DeviceClass {names} also claims {claimed}; {rule}: this one{when}; remove extendedResourceName from the other to make it plain",
        )
    else:
        report.error(
            "spec.extendedResourceName",
            f"DeviceClass {names} also claims {claimed}; {rule}: DeviceClass {name_of(winner)}{when}, so pods asking for {claimed} never get this class; remove extendedResourceName from one of them",
        )


def _class_rules(report: Report, obj: Mapping[str, Any]) -> None:
    """What one class says on its own: a name pods can write, a name the API accepts."""
    name = name_of(obj)
    if name and implicit_resource_name(name) is None:
        report.info(
            "metadata.name",
            "longer than 63 characters, so no pod can ask for it as deviceclass.resource.kubernetes.io/<name>; only claims reach it",
        )
    claimed = as_dict(obj.get("spec")).get("extendedResourceName")
    if not isinstance(claimed, str):
        return  # unset, or the schema check reported its type
    if not is_claimable_resource_name(claimed):
        report.error(
            "spec.extendedResourceName",
            f"{claimed!r} is not an extended resource name the API server accepts: a domain outside kubernetes.io, '/', and a name of at most 63 letters, digits, '-', '_' or '.' (e.g. nvidia.com/gpu)",
        )
        return
    if as_list(as_dict(obj.get("spec")).get("config")) and not claimed.endswith(SHARED_SUFFIX):
        report.warning(
            "spec.extendedResourceName",
            f"this class carries a config (e.g. sharing), and every pod asking for {claimed} gets it; leave sharing classes without extendedResourceName and ask for them as deviceclass.resource.kubernetes.io/{name} (the device plugin named its shared GPUs <resource>{SHARED_SUFFIX})",
        )


def check_extended_resource(
    report: Report,
    obj: Mapping[str, Any],
    *,
    claiming: list[Mapping[str, Any]],
    cluster_classes: Iterable[Mapping[str, Any]],
) -> None:
    """Names on their own, then against the classes of the input so far that claim a name
    (`claiming`, which this appends to) and those of the cluster."""
    _class_rules(report, obj)
    in_cluster = {name_of(c): c for c in cluster_classes}
    applied = as_applied(obj, in_cluster.get(name_of(obj)))
    earlier = list(claiming)
    replaced = {name_of(e) for e in earlier} | {name_of(obj)}
    cluster = [c for name, c in in_cluster.items() if name not in replaced]
    _conflicts(report, applied, [*earlier, *cluster])
    if claimed_name(obj) is not None:
        claiming.append(applied)


def as_applied(obj: Mapping[str, Any], found: Mapping[str, Any] | None) -> dict[str, Any]:
    """`obj` once applied: its own spec, and the age of the class it replaces (if any)."""
    stamp = metadata_of(found or {}).get("creationTimestamp")
    age = {"creationTimestamp": stamp} if isinstance(stamp, str) else {}
    return {**obj, "metadata": {**metadata_of(obj), **age}}


def compare_classes(
    generated: Sequence[GeneratedClass],
    *,
    device_classes: Sequence[Mapping[str, Any]],
    resource_slices: Sequence[Mapping[str, Any]],
) -> list[Finding]:
    """Findings for `kubectl dra classes --cluster`: each generated class against the cluster."""
    existing = {name_of(c): c for c in device_classes}
    ours = {g.name for g in generated}
    # Audit's matcher: results are remembered per device shape, so 8,000 devices of two
    # models cost two evaluations per selector, not 8,000.
    matcher = DeviceMatcher.build(
        resource_slices,
        [*(c for c in device_classes if name_of(c) not in ours), *(g.manifest for g in generated)],
    )
    findings: list[Finding] = []
    for wanted in generated:
        report = Report(wanted.manifest)
        found = existing.get(wanted.name)
        if found is None:
            report.error(
                "metadata.name",
                "missing from the cluster; apply the output of `kubectl dra classes` (with the same flags)",
            )
        else:
            _differences(report, wanted.manifest, found)
        applied = as_applied(wanted.manifest, found)
        _class_rules(report, applied)
        _conflicts(report, applied, [c for c in device_classes if name_of(c) not in ours])
        _reach(report, wanted, matcher)
        findings += report.findings
    for obj in device_classes:
        labels = as_dict(metadata_of(obj).get("labels"))
        if labels.get(MANAGED_BY_LABEL) == MANAGED_BY and name_of(obj) not in ours:
            stale = Report(obj)
            stale.warning(
                "metadata.labels",
                "made by kubectl dra classes, but the policy no longer needs it; delete it once no pod asks for it",
            )
            findings += stale.findings
    return findings


def _differences(report: Report, wanted: Mapping[str, Any], found: Mapping[str, Any]) -> None:
    want, have = as_dict(wanted.get("spec")), as_dict(found.get("spec"))
    for key in ("selectors", "config", "extendedResourceName"):
        if want.get(key) != have.get(key):
            report.error(
                f"spec.{key}",
                f"differs from what the policy needs (cluster: {_short(have.get(key))}; wanted: {_short(want.get(key))}); apply the output of `kubectl dra classes` to update it",
            )


def _short(value: Any, limit: int = 160) -> str:
    text = "unset" if value is None else json.dumps(value, separators=(",", ":"))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _reach(report: Report, wanted: GeneratedClass, matcher: DeviceMatcher) -> None:
    """How many published devices the class selects; none is a warning naming the request."""
    selected = matcher.matching(wanted.name, ()) or []
    (expressions,) = class_selectors([wanted.manifest]).values()
    for index, expression in enumerate(expressions):
        if expression in matcher.errors:
            report.error(
                f"spec.selectors[{index}]",
                f"CEL: {matcher.errors[expression]}; the scheduler stops allocating when a selector fails",
            )
    asked_as = wanted.extended_resource_name or wanted.implicit_resource_name or "a claim"
    published = len(matcher.devices)
    if not selected:
        report.warning(
            "spec.selectors",
            f"matches none of the {published} published devices: pods asking for {asked_as} would stay Pending",
        )
        return
    nodes = {d.node for d in selected if d.node}
    report.info(
        "spec.selectors",
        f"{len(selected)} of {published} published devices match, on {len(nodes)} nodes; pods ask for {asked_as}",
    )
