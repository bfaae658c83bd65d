"""What a selector may cost to check and to run, decided before it is checked or run.

A selector is written by whoever writes a claim or a DeviceClass, and `kubectl dra validate`
must finish whatever it is given. So, like the API server, which estimates the worst-case cost
of a selector when the object is written and refuses one above its limit, we bound:

- nesting (the depth of the parse tree): deeper trees are refused before anything walks them;
- size: `cel.bind` is expanded by substitution, which copies the bound value once per use, so
  nested binds can grow the tree exponentially; the expansion stops at MAX_TREE_NODES;
- cost: an estimate of the evaluation steps on the largest device the API accepts (a
  comprehension costs its body once per element, string functions the length they build),
  refused above MAX_COST, the API server's limit for one device selector;
- evaluation (with --cluster): steps actually taken on one device, stopped at
  MAX_EVALUATION_STEPS; the selector is then reported as too expensive and not run on the
  remaining devices.

Literals cel-go refuses are findings too: integers outside int64 (uint64 for `u` literals),
doubles outside float64, and `\\u`/`\\U` escapes naming a surrogate or no code point at all.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

import lark

from kubectl_dra.celcheck.errors import CelTooExpensive, Problem
from kubectl_dra.celcheck.node import Node

MAX_COST: Final = 1_000_000  # the API server's cost limit for one device selector
# celpy evaluates far slower than cel-go (about 0.1 ms per tree node visited), so evaluation
# has its own bound: node visits per device, about 0.3 s, far above what real selectors take.
MAX_EVALUATION_STEPS: Final = 2_500
MAX_TREE_NODES: Final = 100_000  # celpy tree nodes after cel.bind expansion (~7 per token)
MAX_TREE_DEPTH: Final = 1_000  # celpy tree levels (~10 per level of parentheses)
# The largest values a device may hold (resource.k8s.io/v1 limits): at most 32 attributes and
# capacities per device, strings and versions of at most 64 characters, driver names of 63.
MAX_DEVICE_ENTRIES: Final = 32
MAX_DEVICE_STRING: Final = 64
UNKNOWN_SIZE: Final = 100  # a list or string the estimate cannot see the size of

INT64: Final = (-(2**63), 2**63 - 1)
UINT64_MAX: Final = 2**64 - 1
_COMPREHENSIONS: Final = frozenset({"all", "exists", "exists_one", "map", "filter"})
_INT_LITERAL: Final = re.compile(r"(0[xX][0-9a-fA-F]+|[0-9]+)[uU]?")
_ESCAPE: Final = re.compile(r"\\(\\|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8})")


def check_tree(tree: lark.Tree[Any]) -> None:
    """Refuse a parse tree deeper than MAX_TREE_DEPTH or larger than MAX_TREE_NODES (iterative)."""
    count = 0
    stack: list[tuple[lark.Tree[Any], int]] = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if depth > MAX_TREE_DEPTH:
            raise CelTooExpensive(
                "the expression is too expensive: it is nested too deeply to check (flatten it)"
            )
        if count > MAX_TREE_NODES:
            raise CelTooExpensive(too_large())
        stack.extend((c, depth + 1) for c in node.children if isinstance(c, lark.Tree))


def tree_size(tree: lark.Tree[Any]) -> int:
    """Nodes of `tree` counted as walked (a subtree shared by cel.bind counts at each use)."""
    size, stack = 0, [tree]
    while stack:
        node = stack.pop()
        size += 1
        stack.extend(c for c in node.children if isinstance(c, lark.Tree))
    return size


def too_large() -> str:
    return (
        f"the expression is too expensive: with cel.bind expanded it has more than "
        f"{MAX_TREE_NODES:,} parse nodes; bind fewer values or use each one fewer times"
    )


@dataclass(frozen=True, slots=True)
class _Estimate:
    cost: int
    size: int  # elements of a list or map, characters of a string: the largest it can be


def estimate_cost(root: Node) -> int:
    """Worst-case evaluation steps of `root` on the largest device (see the module doc)."""
    return _estimate(root).cost


def _estimate(node: Node) -> _Estimate:
    kids = [_estimate(child) for child in node.children]
    cost = 1 + sum(k.cost for k in kids)
    if node.kind == "lit":
        value = node.value
        return _Estimate(1, len(value) if isinstance(value, str | bytes) else 1)
    if node.kind in ("list", "map"):
        return _Estimate(cost, max(len(node.children) // (2 if node.kind == "map" else 1), 1))
    if node.kind in ("select", "index"):
        # device.attributes (a map of domains), a domain's map, or one value: never larger
        return _Estimate(cost, max(MAX_DEVICE_STRING, MAX_DEVICE_ENTRIES))
    if node.kind == "arith" and node.value == "+":
        return _Estimate(cost + kids[0].size + kids[1].size, kids[0].size + kids[1].size)
    if node.kind in ("rel", "in"):
        return _Estimate(cost + max(k.size for k in kids), 1)
    if node.kind != "call":
        return _Estimate(cost, max((k.size for k in kids), default=1))
    name = str(node.value)
    if name in _COMPREHENSIONS and node.target and len(kids) >= 3:
        # receiver, variable, body (and a filter/transform for the 4-argument map)
        receiver, body = kids[0], kids[2:]
        per_element = 1 + sum(k.cost for k in body)
        size = receiver.size if name in ("map", "filter") else 1
        return _Estimate(receiver.cost + receiver.size * per_element, size)
    if name == "replace" and node.target and len(kids) >= 3:
        grown = kids[0].size * max(kids[2].size, 1) + kids[0].size
        return _Estimate(cost + grown, grown)
    if name in ("join", "split", "lowerAscii", "upperAscii", "trim", "substring", "matches"):
        size = kids[0].size if kids else UNKNOWN_SIZE
        return _Estimate(cost + size, size)
    return _Estimate(cost, max((k.size for k in kids), default=UNKNOWN_SIZE))


def check_cost(root: Node) -> None:
    cost = estimate_cost(root)
    if cost > MAX_COST:
        raise CelTooExpensive(
            f"the expression is too expensive: its estimated cost on the largest device is "
            f"{cost:,}, above the API server's limit of {MAX_COST:,}; nest fewer comprehensions "
            f"or grow strings less"
        )


def _nodes(root: Node) -> Iterator[tuple[Node, bool]]:
    """Every node with whether a unary minus applies to it directly (for -9223372036854775808)."""
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, negated = stack.pop()
        yield node, negated
        stack.extend((c, node.kind == "neg") for c in node.children)


def literal_problems(root: Node) -> list[Problem]:
    """Literals cel-go refuses to compile."""
    problems: list[Problem] = []
    for node, negated in _nodes(root):
        if node.kind != "lit":
            continue
        where = f" (line {node.line}, column {node.column})" if node.line else ""
        raw = node.raw or ""
        value = node.value
        if isinstance(value, bool) or value is None:
            continue
        if _INT_LITERAL.fullmatch(raw) and not isinstance(value, int):
            value = UINT64_MAX + 1  # more digits than Python converts: out of range anyway
        if isinstance(value, int):
            unsigned = raw.endswith(("u", "U"))
            low, high = (0, UINT64_MAX) if unsigned else INT64
            signed = -value if negated else value
            if not low <= signed <= high:
                kind = "uint64" if unsigned else "int64"
                problems.append(
                    Problem("error", f"integer literal {raw[:30]}{where} does not fit in {kind}")
                )
        elif isinstance(value, float) and not math.isfinite(value):
            problems.append(Problem("error", f"double literal {raw[:30]}{where} is out of range"))
        elif (
            isinstance(value, str | bytes)
            or raw[:1] in ("'", '"')
            or raw[:2].lower()
            in (
                "r'",
                'r"',
                "b'",
                'b"',
            )
        ):
            problems += [Problem("error", f"{m}{where}") for m in escape_problems(raw)]
    return problems


def escape_problems(raw: str) -> list[str]:
    """`\\uXXXX`/`\\UXXXXXXXX` escapes that name a surrogate or no code point."""
    if raw[:1] in "rR" or raw[:2] in ("br", "bR", "Br", "BR", "rb", "rB", "Rb", "RB"):
        return []  # raw strings do not process escapes
    problems = []
    for match in _ESCAPE.finditer(raw):
        escape = match.group(1)
        if escape == "\\":
            continue
        point = int(escape[1:], 16)
        if 0xD800 <= point <= 0xDFFF:
            problems.append(
                f"string literal escape \\{escape} is a lone surrogate, which cel-go refuses"
            )
        elif point > 0x10FFFF:
            problems.append(f"string literal escape \\{escape} is not a Unicode code point")
    return problems
