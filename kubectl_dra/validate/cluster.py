"""Rule 5, with --cluster: classes exist, selectors on published devices, one node can serve."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dracore.dra import newest_generation_devices
from kubectl_dra import celcheck
from kubectl_dra.validate.claims import Request
from kubectl_dra.validate.findings import (
    Report,
    as_dict,
    as_list,
    name_of,
    plural,
)

if TYPE_CHECKING:
    from kubectl_dra.kube import ClusterReader


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


# --- rule 5: against the cluster --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Device:
    node: str  # node name, or "" for devices reachable from several nodes
    ref: str  # driver/pool/device
    value: Any  # the `device` CEL value
    free: bool


def _devices(snapshot: ClusterSnapshot) -> list[_Device]:
    """Every device of the newest generation of each pool, with the node it sits on."""
    allocated: set[str] = set()
    for claim in snapshot.resource_claims:
        allocation = as_dict(as_dict(claim.get("status")).get("allocation"))
        for result in as_list(as_dict(allocation.get("devices")).get("results")):
            result = as_dict(result)
            allocated.add(f"{result.get('driver')}/{result.get('pool')}/{result.get('device')}")
    devices: list[_Device] = []
    for published in newest_generation_devices(snapshot.resource_slices):
        ref = "/".join(published.key)
        value = celcheck.device_value(published.device, driver=published.driver)
        devices.append(_Device(published.node or "", ref, value, ref not in allocated))
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
            except celcheck.CelEvaluationTooExpensive as exc:
                # One device used up the budget: the others would too, so stop here.
                errors.append(f"{label} on {device.ref}: {exc}")
                kept = []
                break
            except celcheck.CelEvaluationError as exc:
                errors.append(f"{label} fails on {device.ref}: {exc}")
        steps.append((label, len(remaining), len(kept)))
        remaining = kept
    return remaining, steps, errors


def _explain(
    class_name: str,
    class_steps: list[tuple[str, int, int]],
    request_steps: list[tuple[str, int, int]],
) -> str:
    parts = [
        f"DeviceClass {class_name} {label} keeps {out} of {inn}" for label, inn, out in class_steps
    ] + [f"request {label} keeps {out} of {inn}" for label, inn, out in request_steps]
    return "; ".join(parts)


class ClusterCheck:
    def __init__(
        self, snapshot: ClusterSnapshot, input_classes: Mapping[str, list[celcheck.Checked]]
    ):
        self.devices = _devices(snapshot)
        self.classes: dict[str, list[celcheck.Checked]] = {}
        for obj in snapshot.device_classes:
            selectors: list[celcheck.Checked] = []
            for selector in as_list(as_dict(obj.get("spec")).get("selectors")):
                expression = as_dict(as_dict(selector).get("cel")).get("expression")
                try:
                    checked = celcheck.check(str(expression))
                except celcheck.CelError:
                    continue
                selectors.append(checked)
            self.classes[name_of(obj)] = selectors
        self.classes.update(input_classes)  # the input is what the user is about to apply
        self._in_class: dict[str, tuple[list[_Device], list[tuple[str, int, int]], list[str]]] = {}

    def in_class(self, name: str) -> tuple[list[_Device], list[tuple[str, int, int]], list[str]]:
        """The devices DeviceClass `name` selects (evaluated once per class per run)."""
        if name not in self._in_class:
            self._in_class[name] = _matches(self.classes[name], self.devices)
        return self._in_class[name]

    def device_class(self, report: Report, name: str) -> None:
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
            f"{plural(len(selected), 'device')} of {len(self.devices)} match on {plural(len(nodes), 'node')}",
        )

    def request(self, report: Report, alternatives: list[Request]) -> list[_Device] | None:
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
                f"{label}: {plural(len(matching), 'device')} match on {plural(len(nodes), 'node')}",
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
        self, report: Report, path: str, requests: list[tuple[Request, list[_Device]]]
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
        report: Report,
        request: Request,
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
                    f"allocationMode All needs every matching device free, but {plural(len(busy), 'device')} are allocated ({', '.join(busy[:3])})",
                )
                return False
            return True
        free_on = Counter({node: sum(d.free for d in devs) for node, devs in per_node.items()})
        shared_free = sum(d.free for d in shared)
        best_node, best = (free_on.most_common(1) or [("", 0)])[0]
        if best + shared_free >= request.count:
            return True
        why = _explain(request.device_class, class_steps, request_steps)
        # The best node's own figures, then the cluster's: both are true, and neither alone
        # explains why the count cannot be met.
        where = (
            f" ({best_node}: {best + shared_free} of {len(per_node[best_node]) + len(shared)} matching free)"
            if best_node
            else ""
        )
        in_all = sum(d.free for d in matching)
        report.error(
            f"{request.path}.count" if request.count > 1 else request.path,
            f"request {request.name!r} needs {plural(request.count, 'device')} on one node, but at most {best + shared_free} matching devices are free on any one node{where}; in the cluster {len(matching)} match on {plural(len(per_node), 'node')}, {in_all} of them free; matching: {why}; lower the count or relax the selectors",
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
