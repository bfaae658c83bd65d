"""The small syntax tree the checks walk: what syntax.py builds and budget.py, guards.py and
static.py read (a module of its own, so the cost budget does not import the parser)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Node:
    """kind: and|or|not|neg|cond|rel|in|arith|select|index|call|ident|lit|list|map|object."""

    kind: str
    children: tuple[Node, ...] = ()
    value: Any = None  # operator, field, function name, identifier or literal value
    line: int = 0
    column: int = 0
    target: bool = False  # call: the first child is the receiver (`x.f(...)`)
    raw: str | None = None  # lit: the literal as written
