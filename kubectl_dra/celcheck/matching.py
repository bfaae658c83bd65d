"""Which published devices a DeviceClass plus request selectors would match (CEL, pure).

The class's selectors and the request's run on each device of the current ResourceSlices with
the same CEL environment `kubectl dra validate --cluster` uses. On 1,000 nodes most devices
differ only in identifiers (uuid, PCI address), so a result is remembered per device *shape*
(attributes and capacity without those identifiers) whenever the expression cannot see them:
it names none of them and uses no macro that could enumerate a map. A device whose evaluation
fails does not match, and the error is kept for the report (the scheduler would fail the claim).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from dracore import dra
from dracore.capacity import DeviceKey, UnitDevice, group_units
from kubectl_dra import celcheck

Obj = Mapping[str, Any]
_IDENTIFIERS = ("uuid", "UUID", "pciBusID", "pcieRoot")
_SHAPE_UNSAFE = re.compile(r"uuid|UUID|pci|\.exists|\.all\(|\.map\(|\.filter\(|size\(|\.exists_one")


@dataclass(slots=True)
class _Entry:
    device: UnitDevice
    driver: str
    raw: Obj
    shape: str
    value: Any = None  # the CEL `device` map, made on first use


@dataclass
class DeviceMatcher:
    entries: list[_Entry]
    classes: dict[str, Obj]
    errors: dict[str, str] = field(default_factory=dict)  # expression -> first evaluation error
    _memo: dict[tuple[str, str], bool] = field(default_factory=dict)

    @classmethod
    def build(cls, slices: Iterable[Obj], classes: Iterable[Obj]) -> DeviceMatcher:
        slices = list(slices)
        by_key: dict[DeviceKey, UnitDevice] = {d.key: d for d in group_units(slices)}
        entries = []
        for published in dra.newest_generation_devices(slices):
            device = by_key.get(published.key)
            if device is not None:
                entries.append(
                    _Entry(
                        device,
                        published.driver,
                        published.device,
                        _shape(published.driver, published.device),
                    )
                )
        named = {str((c.get("metadata") or {}).get("name", "")): c for c in classes}
        return cls(entries=entries, classes=named)

    @cached_property
    def devices(self) -> list[UnitDevice]:
        return [e.device for e in self.entries]

    def _matches(self, entry: _Entry, checked: celcheck.Checked) -> bool:
        safe = not _SHAPE_UNSAFE.search(checked.expression)
        memo_key = (checked.expression, entry.shape if safe else "\0".join(entry.device.key))
        if memo_key in self._memo:
            return self._memo[memo_key]
        if entry.value is None:
            entry.value = celcheck.device_value(entry.raw, driver=entry.driver)
        try:
            result = checked.evaluate(entry.value)
        except celcheck.CelEvaluationError as exc:
            self.errors.setdefault(checked.expression, str(exc))
            result = False
        self._memo[memo_key] = result
        return result

    def matching(self, device_class: str, selectors: Iterable[str]) -> list[UnitDevice] | None:
        """Devices the class and the selectors both accept; None if the class does not exist."""
        cls = self.classes.get(device_class)
        if cls is None:
            return None
        expressions = [
            str((s.get("cel") or {}).get("expression", ""))
            for s in (cls.get("spec") or {}).get("selectors") or []
            if isinstance(s, Mapping)
        ]
        checked = []
        for expression in [*expressions, *selectors]:
            try:
                checked.append(celcheck.check(expression))
            except celcheck.CelError as exc:
                self.errors.setdefault(expression, str(exc))
                return []
        return [e.device for e in self.entries if all(self._matches(e, c) for c in checked)]


def _shape(driver: str, raw: Obj) -> str:
    attributes = {
        k: v for k, v in (raw.get("attributes") or {}).items() if not k.endswith(_IDENTIFIERS)
    }
    return json.dumps(
        [driver, attributes, raw.get("capacity") or {}, bool(raw.get("allowMultipleAllocations"))],
        sort_keys=True,
    )
