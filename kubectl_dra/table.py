"""Tables that fit the terminal (pure), laid out the way kubectl lays them out.

A table declares its columns with a priority. When its natural width is more than the
terminal's, it is narrowed in three steps, each only as far as needed:

1. columns are dropped, the highest priority number first (rightmost first on a tie); priority
   0 is never dropped, nor is a column whose loss would make two different rows look the same;
   a column dropped early comes back if the ones dropped after it left room for it;
2. prose columns (`wrap=True`: findings, messages) are wrapped onto more lines, down to 20
   characters, never cut;
3. the widest other columns are shortened with an ellipsis in the middle (`gpu-a100-…-node-17`
   keeps the end that tells names apart), never below their header, and never so far that two
   different values of the column look the same.

A table that is still too wide is left wider than asked: nothing more can go. Without a width
(`-o wide`) every column shows in full. The full values are always in `-o wide|json|yaml`.

Every cell is escaped first: names and annotations come from pod authors, and a character the
terminal acts on rather than shows (C0/C1 controls, DEL, bidi overrides and isolates, zero-width
marks, line and paragraph separators) would let them move the cursor, recolour the screen or
make one name look like another.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

EMPTY: Final = "-"
ELLIPSIS: Final = "…"
GAP: Final = "   "  # kubectl's: columns padded to the widest cell plus 3 spaces
MIN_WRAP: Final = 20  # a wrapped column narrower than this reads worse than a wide line


@dataclass(frozen=True, slots=True)
class Column:
    """A table column: its header, when it drops (0: never), and whether its text wraps."""

    header: str
    priority: int = 0
    wrap: bool = False


def safe_cell(text: str) -> str:
    """`text` as it may reach a terminal: each character it would act on shown escaped.

    str.isprintable() is False exactly for controls, format characters (bidi marks, zero-width
    characters), separators other than the space, surrogates and unassigned code points.
    """
    if text.isprintable():
        return text
    return "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text
    )


def shorten_middle(text: str, width: int) -> str:
    """`text` in at most `width` characters, its middle replaced by an ellipsis."""
    if len(text) <= width:
        return text
    if width < 3:
        return text[:width]
    tail = (width - 1) // 2 + (width - 1) % 2  # the tail gets the odd character
    head = width - 1 - tail
    return text[:head] + ELLIPSIS + text[len(text) - tail :]


def distinct_width(values: Iterable[str]) -> int:
    """The narrowest width at which shorten_middle still tells all `values` apart.

    Widening only ever shows more of each value, so a binary search finds it in O(n log m).
    """
    distinct = set(values)
    longest = max(map(len, distinct), default=0)
    low, high = 1, max(longest, 1)
    while low < high:
        middle = (low + high) // 2
        if len({shorten_middle(v, middle) for v in distinct}) == len(distinct):
            high = middle
        else:
            low = middle + 1
    return high


@dataclass(frozen=True, slots=True)
class Layout:
    """Which columns show, how wide each is, and every row's cells (escaped, maybe shortened)."""

    columns: tuple[Column, ...]
    widths: tuple[int, ...]
    rows: tuple[tuple[str, ...], ...]


def _span(widths: Iterable[int], gap: str) -> int:
    widths = list(widths)
    return sum(widths) + len(gap) * max(len(widths) - 1, 0)


def _drop_columns(
    columns: Sequence[Column],
    cells: Sequence[Sequence[str]],
    natural: Sequence[int],
    *,
    width: int,
    gap: str,
) -> list[int]:
    shown = list(range(len(columns)))
    distinct_rows = len({tuple(row) for row in cells})
    order = sorted(
        (i for i, c in enumerate(columns) if c.priority > 0),
        key=lambda i: (-columns[i].priority, -i),
    )
    dropped = []
    for index in order:
        if _span((natural[i] for i in shown), gap) <= width:
            break
        rest = [i for i in shown if i != index]
        if len({tuple(row[i] for i in rest) for row in cells}) == distinct_rows:
            shown = rest
            dropped.append(index)
    # Dropping a wide column may have freed room for a narrower one dropped before it.
    for index in reversed(dropped):
        wider = sorted([*shown, index])
        if _span((natural[i] for i in wider), gap) <= width:
            shown = wider
    return shown


def _floor(column: Column, values: Sequence[str], *, natural: int, header: int) -> int:
    """How narrow a column may get: its header, and wide enough to tell its values apart."""
    if column.wrap:
        return min(natural, max(header, MIN_WRAP))
    return min(natural, max(header, distinct_width(values)))


def plan_table(
    columns: Sequence[Column],
    rows: Iterable[Sequence[object]],
    *,
    width: int | None,
    gap: str = GAP,
    headers: bool = True,
) -> Layout:
    """Choose the columns and widths of a table for `width` characters (None: no limit)."""
    cells = [[safe_cell(str(cell)) or EMPTY for cell in row] for row in rows]
    for row in cells:
        if len(row) != len(columns):
            raise ValueError(f"a row has {len(row)} cells for {len(columns)} columns")
    natural = [
        max([len(c.header) if headers else 0, *(len(row[i]) for row in cells)])
        for i, c in enumerate(columns)
    ]
    shown = list(range(len(columns)))
    widths = {i: natural[i] for i in shown}
    if width is not None:
        shown = _drop_columns(columns, cells, natural, width=width, gap=gap)
        widths = {i: natural[i] for i in shown}
        floors = {
            i: _floor(
                columns[i],
                [row[i] for row in cells],
                natural=natural[i],
                header=len(columns[i].header) if headers else 0,
            )
            for i in shown
        }
        excess = _span(widths.values(), gap) - width
        while excess > 0:
            narrowable = [i for i in shown if widths[i] > floors[i]]
            if not narrowable:
                break
            # Prose wraps first; then the widest column gives up one character at a time.
            index = max(narrowable, key=lambda i: (columns[i].wrap, widths[i], -i))
            widths[index] -= 1
            excess -= 1
    kept = tuple(columns[i] for i in shown)
    shortened = tuple(
        tuple(row[i] if columns[i].wrap else shorten_middle(row[i], widths[i]) for i in shown)
        for row in cells
    )
    return Layout(kept, tuple(widths[i] for i in shown), shortened)


def _lines_of(cells: Sequence[str], layout: Layout) -> list[list[str]]:
    """One row as lines: wrapped prose continues below, the other cells left blank there."""
    parts = [
        (textwrap.wrap(cell, w, break_on_hyphens=False) or [cell])
        if column.wrap and len(cell) > w
        else [cell]
        for cell, w, column in zip(cells, layout.widths, layout.columns, strict=True)
    ]
    height = max(map(len, parts), default=1)
    return [[p[n] if n < len(p) else "" for p in parts] for n in range(height)]


def render_layout(layout: Layout, *, gap: str = GAP, headers: bool = True) -> str:
    lines = []
    head = [[c.header for c in layout.columns]] if headers else []
    for row in [*head, *(line for r in layout.rows for line in _lines_of(r, layout))]:
        padded = (cell.ljust(w) for cell, w in zip(row, layout.widths, strict=True))
        lines.append(gap.join(padded).rstrip())
    return "\n".join(lines) + "\n"


def format_table(
    columns: Sequence[Column | str],
    rows: Iterable[Sequence[object]],
    *,
    width: int | None = None,
    gap: str = GAP,
    headers: bool = True,
) -> str:
    """A table in `width` characters (None: every column in full); `-` for an empty cell."""
    declared = [c if isinstance(c, Column) else Column(c) for c in columns]
    layout = plan_table(declared, rows, width=width, gap=gap, headers=headers)
    return render_layout(layout, gap=gap, headers=headers)
