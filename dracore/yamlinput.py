"""YAML from users, read with a bounded cost: the one loader for policies and manifests.

PyYAML shares an anchored node between its aliases, so a few hundred bytes of nested aliases
("billion laughs") load quickly but describe a tree of hundreds of millions of nodes; whatever
walks the result afterwards (translation, JSON encoding, printing) pays for every one of them.
So before constructing a document we walk its node graph once, counting each anchored node once,
and refuse a document whose aliases would add more than MAX_ALIAS_NODES nodes, that nests deeper
than MAX_DEPTH, or whose alias refers to the node that contains it (a cycle no Kubernetes object
can have).  Errors carry the line and column, for a one-line message.

Mapping keys must be strings, as in JSON and so in every Kubernetes object and our policy:
`limits: {1: 2}` or `yes: x` would otherwise reach code that sorts or matches keys as strings.
The error names the key's field path, line and column, and says to quote it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml

# Kubernetes objects nest about 15 levels deep (a pod's affinity terms); 100 leaves room for CRDs.
MAX_DEPTH = 100
# Anchors are fine for sharing a block a few times; this bounds what the expansion may add.
MAX_ALIAS_NODES = 100_000

_Loader: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class YamlInputError(ValueError):
    """A YAML document that cannot be read, or costs more than it may; the message is one line."""


class NonStringKeyError(YamlInputError):
    """A mapping key that is not a string (an int, a bool, null, a list...)."""


_STRING_TAG = "tag:yaml.org,2002:str"


def _where(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "?"


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _labelled_children(node: yaml.Node) -> list[tuple[str, yaml.Node]]:
    """Each child with the path segment that leads to it (`.key`, `[index]`)."""
    if isinstance(node, yaml.SequenceNode):
        return [(f"[{i}]", kid) for i, kid in enumerate(node.value)]
    if isinstance(node, yaml.MappingNode):
        return [
            (f".{k.value}" if isinstance(k, yaml.ScalarNode) else "", part)
            for k, v in node.value
            for part in (k, v)
        ]
    return []


def _check_keys(
    mapping: yaml.MappingNode, root: yaml.Node, reached_from: dict[int, tuple[int, str]]
) -> None:
    for key, _ in mapping.value:
        if isinstance(key, yaml.ScalarNode) and key.tag == _STRING_TAG:
            continue
        segments: list[str] = []
        current = id(mapping)
        while current in reached_from:
            current, segment = reached_from[current]
            segments.append(segment)
        path = "".join(reversed(segments)).lstrip(".") or "the top level"
        shown = repr(key.value)[:40] if isinstance(key, yaml.ScalarNode) else "a " + key.id
        kind = key.tag.rsplit(":", 1)[-1] if isinstance(key, yaml.ScalarNode) else key.id
        fix = f'quote it ("{key.value}")' if isinstance(key, yaml.ScalarNode) else "use a string"
        raise NonStringKeyError(
            f"{_object_name(root)}{path}: key {shown} at {_where(key.start_mark)} is "
            f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}, not a string; {fix}"
        )


def _object_name(root: yaml.Node) -> str:
    """`Kind "name": ` from a document's node, as far as it has them, else ""."""
    if not isinstance(root, yaml.MappingNode):
        return ""
    fields = {k.value: v for k, v in root.value if isinstance(k, yaml.ScalarNode)}
    kind = fields.get("kind")
    metadata = fields.get("metadata")
    name = None
    if isinstance(metadata, yaml.MappingNode):
        name = next(
            (v for k, v in metadata.value if isinstance(k, yaml.ScalarNode) and k.value == "name"),
            None,
        )
    parts = [
        str(kind.value)[:100] if isinstance(kind, yaml.ScalarNode) else "",
        f'"{str(name.value)[:253]}"' if isinstance(name, yaml.ScalarNode) else "",
    ]
    text = " ".join(p for p in parts if p)
    return f"{text}: " if text else ""


def check_node(node: yaml.Node) -> None:
    """Refuse a node graph that is cyclic, too deep, grows too much when aliases are expanded,
    or has a mapping key that is not a string.

    Iterative, with each distinct node visited once, so the check costs what the text costs.
    """
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    # Where each node was first reached (its parent and the key or index leading to it), so a
    # key's field path is built only when there is an error to report.
    reached_from: dict[int, tuple[int, str]] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(node, False)]
    unique = 0
    while stack:
        current, children_done = stack.pop()
        key = id(current)
        if children_done:
            kids = _children(current)
            size[key] = 1 + sum(size[id(k)] for k in kids)
            depth[key] = 1 + max((depth[id(k)] for k in kids), default=0)
            on_path.discard(key)
            if depth[key] > MAX_DEPTH:
                raise YamlInputError(
                    f"nested more than {MAX_DEPTH} levels deep (at {_where(current.start_mark)})"
                )
            continue
        if key in size:
            continue
        if key in on_path:
            raise YamlInputError(
                f"an alias at or under {_where(current.start_mark)} refers to a node that contains it"
            )
        unique += 1
        on_path.add(key)
        stack.append((current, True))
        if isinstance(current, yaml.MappingNode):
            _check_keys(current, node, reached_from)
        labelled = _labelled_children(current)
        for segment, kid in labelled:
            if id(kid) in on_path:
                raise YamlInputError(
                    f"an alias at {_where(kid.start_mark)} refers to a node that contains it"
                )
            reached_from.setdefault(id(kid), (key, segment))
        # Pushed last first, so the document is checked (and a bad key found) in order.
        for _, kid in reversed(labelled):
            if id(kid) not in size:
                stack.append((kid, False))
    if size[id(node)] - unique > MAX_ALIAS_NODES:
        raise YamlInputError(
            f"aliases expand the document to {size[id(node)]:,} nodes "
            f"(more than {MAX_ALIAS_NODES:,} beyond its own {unique:,}); write the values out"
        )


def load_all(text: str) -> Iterator[Any]:
    """Each document of `text`, checked by `check_node` before it is constructed."""
    loader = _Loader(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            check_node(node)
            yield loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        where = f" at {_where(mark)}" if mark is not None else ""
        raise YamlInputError(f"not valid YAML{where}: {problem}") from None
    except RecursionError:
        raise YamlInputError(f"nested more than {MAX_DEPTH} levels deep") from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        if isinstance(exc, YamlInputError):
            raise
        raise YamlInputError(f"a value cannot be read: {exc}") from None
    finally:
        loader.dispose()


def load(text: str) -> Any:
    """The single document of `text` (None when empty); more than one is an error."""
    documents = list(load_all(text))
    if len(documents) > 1:
        raise YamlInputError(f"expected one YAML document, found {len(documents)}")
    return documents[0] if documents else None
