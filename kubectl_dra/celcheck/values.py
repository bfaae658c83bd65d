"""The Kubernetes CEL value types (Quantity, Semver) and the extension functions evaluated here."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from functools import total_ordering
from typing import Any, Final

from celpy import celtypes

from dracore.quantity import parse_quantity

# --- Kubernetes value types -------------------------------------------------------------------

_SEMVER = re.compile(
    r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
)


@total_ordering
@dataclass(frozen=True, slots=True)
class Quantity:
    """A resource.Quantity as an exact number ("80Gi", "500m", "1e3")."""

    value: Fraction
    text: str = field(compare=False, default="")

    @classmethod
    def parse(cls, text: str) -> Quantity:
        value = parse_quantity(text)
        if value is None:
            raise ValueError(f"{text!r} is not a quantity (examples: 80Gi, 1.5, 500m)")
        return cls(value, text)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Quantity):
            return NotImplemented
        return self.value < other.value

    def __str__(self) -> str:
        return self.text or str(self.value)


@total_ordering
@dataclass(frozen=True, slots=True)
class Semver:
    """A semantic version (2.0.0); build metadata is ignored in comparisons, as in Kubernetes."""

    major: int
    minor: int
    patch: int
    pre: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str, *, lenient: bool = False) -> Semver:
        if lenient and isinstance(text, str) and re.fullmatch(r"[0-9]+(\.[0-9]+)?", text):
            text += ".0" * (2 - text.count("."))
        match = _SEMVER.match(text) if isinstance(text, str) else None
        if not match:
            raise ValueError(f"{text!r} is not a semantic version (example: 1.2.3)")
        pre = tuple(match.group(4).split(".")) if match.group(4) else ()
        return cls(int(match.group(1)), int(match.group(2)), int(match.group(3)), pre)

    def _key(self) -> tuple[Any, ...]:
        # A release sorts after its pre-releases; numeric identifiers sort before alphanumeric.
        pre = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in self.pre)
        return (self.major, self.minor, self.patch, not self.pre, pre)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Semver):
            return NotImplemented
        return self._key() < other._key()

    def __str__(self) -> str:
        base = f"{self.major}.{self.minor}.{self.patch}"
        return f"{base}-{'.'.join(self.pre)}" if self.pre else base


# --- Kubernetes CEL functions (evaluation) ----------------------------------------------------


def _compare(a: Any, b: Any) -> celtypes.IntType:
    if type(a) is not type(b) or not isinstance(a, Quantity | Semver):
        raise TypeError(f"compareTo needs two quantities or two semvers, got {a!r} and {b!r}")
    return celtypes.IntType((a > b) - (a < b))


def _quantity_number(q: Any) -> Fraction:
    if isinstance(q, Quantity):
        return q.value
    if isinstance(q, int):
        return Fraction(int(q))
    raise TypeError(f"not a quantity: {q!r}")


def _parse_or_error(parse: Callable[[str], Any]) -> Callable[[Any], Any]:
    def convert(text: Any) -> Any:
        try:
            return parse(str(text))
        except ValueError as exc:
            raise ValueError(str(exc)) from None

    return convert


def _is(parse: Callable[[str], Any]) -> Callable[[Any], celtypes.BoolType]:
    def check(text: Any) -> celtypes.BoolType:
        try:
            parse(str(text))
        except ValueError:
            return celtypes.BoolType(False)
        return celtypes.BoolType(True)

    return check


def _index_of(target: Any, item: Any, *rest: Any) -> celtypes.IntType:
    if isinstance(target, str):
        return celtypes.IntType(target.find(item, int(rest[0]) if rest else 0))
    return celtypes.IntType(list(target).index(item) if item in target else -1)


def _last_index_of(target: Any, item: Any) -> celtypes.IntType:
    if isinstance(target, str):
        return celtypes.IntType(target.rfind(item))
    items = list(target)
    return celtypes.IntType(len(items) - 1 - items[::-1].index(item) if item in items else -1)


def _split(text: Any, sep: Any, *limit: Any) -> celtypes.ListType:
    parts = str(text).split(str(sep), int(limit[0]) - 1) if limit else str(text).split(str(sep))
    return celtypes.ListType([celtypes.StringType(p) for p in parts])


FUNCTIONS: Final[dict[str, Callable[..., Any]]] = {
    "quantity": _parse_or_error(Quantity.parse),
    "isQuantity": _is(Quantity.parse),
    "semver": _parse_or_error(Semver.parse),
    "isSemver": _is(Semver.parse),
    "compareTo": _compare,
    "isGreaterThan": lambda a, b: celtypes.BoolType(_compare(a, b) > 0),
    "isLessThan": lambda a, b: celtypes.BoolType(_compare(a, b) < 0),
    "add": lambda a, b: Quantity(_quantity_number(a) + _quantity_number(b)),
    "sub": lambda a, b: Quantity(_quantity_number(a) - _quantity_number(b)),
    "asInteger": lambda q: celtypes.IntType(int(_quantity_number(q))),
    "asApproximateFloat": lambda q: celtypes.DoubleType(float(_quantity_number(q))),
    "isInteger": lambda q: celtypes.BoolType(_quantity_number(q).denominator == 1),
    "sign": lambda q: celtypes.IntType((_quantity_number(q) > 0) - (_quantity_number(q) < 0)),
    "major": lambda v: celtypes.IntType(v.major),
    "minor": lambda v: celtypes.IntType(v.minor),
    "patch": lambda v: celtypes.IntType(v.patch),
    "replace": lambda s, old, new, *n: celtypes.StringType(
        str(s).replace(str(old), str(new), int(n[0]) if n else -1)
    ),
    "lowerAscii": lambda s: celtypes.StringType(str(s).lower()),
    "upperAscii": lambda s: celtypes.StringType(str(s).upper()),
    "trim": lambda s: celtypes.StringType(str(s).strip()),
    "split": _split,
    "join": lambda items, *sep: celtypes.StringType(
        (str(sep[0]) if sep else "").join(str(i) for i in items)
    ),
    "indexOf": _index_of,
    "lastIndexOf": _last_index_of,
    "substring": lambda s, start, *end: celtypes.StringType(
        str(s)[int(start) : int(end[0]) if end else None]
    ),
    "charAt": lambda s, i: celtypes.StringType(str(s)[int(i) : int(i) + 1]),
}
