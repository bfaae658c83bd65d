"""Which attribute reads are guarded by a preceding `"k" in ...` or `has(...)`."""

from __future__ import annotations

from dataclasses import dataclass

from kubectl_dra.celcheck.node import Node


@dataclass(frozen=True, slots=True)
class AttributeRead:
    kind: str  # attributes | capacity
    domain: str
    key: str

    def __str__(self) -> str:
        return f'device.{self.kind}["{self.domain}"].{self.key}'

    def guard(self) -> str:
        return f'"{self.key}" in device.{self.kind}["{self.domain}"]'


def string_literal(node: Node) -> str | None:
    return node.value if node.kind == "lit" and isinstance(node.value, str) else None


def _domain_map(node: Node) -> tuple[str, str] | None:
    """`device.attributes["d"]` -> ("attributes", "d")."""
    if node.kind != "index":
        return None
    base, key = node.children
    domain = string_literal(key)
    if (
        domain is not None
        and base.kind == "select"
        and base.value in ("attributes", "capacity")
        and base.children[0].kind == "ident"
        and base.children[0].value == "device"
    ):
        return str(base.value), domain
    return None


def attribute_read(node: Node) -> AttributeRead | None:
    """`device.attributes["d"].k` or `device.attributes["d"]["k"]`."""
    if node.kind == "select":
        owner, key = _domain_map(node.children[0]), node.value
    elif node.kind == "index":
        owner, key = _domain_map(node.children[0]), string_literal(node.children[1])
    else:
        return None
    return AttributeRead(owner[0], owner[1], key) if owner and key is not None else None


def _guard_of(node: Node) -> AttributeRead | None:
    if node.kind == "in":
        key, owner = string_literal(node.children[0]), _domain_map(node.children[1])
        return AttributeRead(owner[0], owner[1], key) if key is not None and owner else None
    if node.kind == "call" and node.value == "has" and len(node.children) == 1:
        return attribute_read(node.children[0])
    return None


def _when_true(node: Node) -> frozenset[AttributeRead]:
    guard = _guard_of(node)
    if guard:
        return frozenset({guard})
    if node.kind == "and":
        return _when_true(node.children[0]) | _when_true(node.children[1])
    if node.kind == "or":
        return _when_true(node.children[0]) & _when_true(node.children[1])
    if node.kind == "not":
        return _when_false(node.children[0])
    return frozenset()


def _when_false(node: Node) -> frozenset[AttributeRead]:
    if node.kind == "or":
        return _when_false(node.children[0]) | _when_false(node.children[1])
    if node.kind == "and":
        return _when_false(node.children[0]) & _when_false(node.children[1])
    if node.kind == "not":
        return _when_true(node.children[0])
    return frozenset()


def unguarded_reads(node: Node, guards: frozenset[AttributeRead] = frozenset()) -> list[Node]:
    """Attribute reads not protected by a preceding `"k" in ...` or `has(...)` check."""
    if node.kind == "call" and node.value == "has":
        return []
    read = attribute_read(node)
    if read is not None:
        return [] if read in guards else [node]
    left_guards = right_guards = guards
    if node.kind == "and":
        right_guards = guards | _when_true(node.children[0])
    elif node.kind == "or":
        right_guards = guards | _when_false(node.children[0])
    if node.kind == "cond":
        cond, yes, no = node.children
        return [
            *unguarded_reads(cond, guards),
            *unguarded_reads(yes, guards | _when_true(cond)),
            *unguarded_reads(no, guards | _when_false(cond)),
        ]
    found: list[Node] = []
    for i, child in enumerate(node.children):
        found += unguarded_reads(child, right_guards if i == 1 else left_guards)
    return found
