"""Reading manifests: multi-document YAML or JSON files, `-` for stdin, `List` kinds flattened.

Whatever a file holds, reading it ends in documents or in one InputError naming the file and,
for one document of several, its index and (when it can be read) its kind and name. YAML goes
through the bounded loader of dracore.yamlinput; JSON gets the same bounds here (nesting
depth, integers Python can convert) and refuses NaN and Infinity, which JSON does not have.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from dracore import yamlinput
from kubectl_dra.errors import InputError
from kubectl_dra.shapes import type_name

MAX_INT_DIGITS = 4_300  # Python's own bound for converting decimal text to int


@dataclass(frozen=True, slots=True)
class Document:
    source: str  # file name, or "stdin"
    index: int  # 1-based position of the document in its source
    object: dict[str, Any]

    @property
    def where(self) -> str:
        """`FILE, document N (Kind "name")`."""
        return document_where(self.source, self.index, self.object)

    @property
    def position(self) -> str:
        """`FILE, document N`, for messages that name the object themselves."""
        return f"{self.source}, document {self.index}"


def document_where(source: str, index: int, obj: Any) -> str:
    """`FILE, document N (Kind "name")`: what an error about one document starts with."""
    name = readable_name(obj)
    return f"{source}, document {index}" + (f" ({name})" if name else "")


def readable_name(obj: Any) -> str:
    """`Kind "name"`, `Kind`, or `"name"` as far as `obj` has them; "" when it has neither."""
    if not isinstance(obj, Mapping):
        return ""
    kind = obj.get("kind")
    metadata = obj.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    parts = [str(kind)[:100] if isinstance(kind, str) and kind else ""]
    if isinstance(name, str) and name:
        parts.append(json.dumps(name[:253]))
    return " ".join(p for p in parts if p)


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {len(text):,} digits")
    return int(text)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _check_depth(value: Any) -> None:
    """Refuse JSON nested deeper than the YAML loader allows (iterative: any depth is safe)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > yamlinput.MAX_DEPTH:
            raise ValueError(f"nested more than {yamlinput.MAX_DEPTH} levels deep")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)


def loads_bounded(text: str) -> Any:
    """json.loads with the YAML loader's bounds; json.JSONDecodeError for a syntax error,
    ValueError (one line) for JSON that is too deep, has huge integers, NaN or Infinity."""
    try:
        value = json.loads(text, parse_int=_bounded_int, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError(f"nested more than {yamlinput.MAX_DEPTH} levels deep") from None
    _check_depth(value)
    return value


def _parse(text: str, source: str) -> Iterator[Any]:
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        try:
            value = loads_bounded(text)
        except json.JSONDecodeError:
            pass  # YAML is a superset of JSON; let the YAML parser report the error
        except ValueError as exc:
            raise InputError(f"{source}: not valid JSON: {exc}") from None
        else:
            yield value
            return
    count = 0  # documents read, numbered as load_documents numbers them (empty ones skipped)
    try:
        for document in yamlinput.load_all(text):
            count += document is not None
            yield document
    except yamlinput.NonStringKeyError as exc:
        raise InputError(f"{source}, document {count + 1}: {exc}") from None
    except yamlinput.YamlInputError as exc:
        raise InputError(f"{source}: {exc}") from None


def decode(data: bytes, source: str) -> str:
    """UTF-8 text (a BOM is dropped), or an InputError saying where the first bad byte is."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{source}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "save the file as UTF-8"
        ) from None


def read_source(path: str, *, stdin: TextIO | None = None) -> tuple[str, str]:
    """(source name, text) of a path, or of stdin for `-`."""
    if path == "-":
        stream = stdin or sys.stdin
        buffer: BinaryIO | None = getattr(stream, "buffer", None)
        if buffer is not None:
            return "stdin", decode(buffer.read(), "stdin")
        try:
            return "stdin", stream.read()
        except UnicodeDecodeError:
            raise InputError("stdin: not UTF-8 text; send UTF-8") from None
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from None
    return path, decode(data, path)


def load_documents(paths: Iterable[str], *, stdin: TextIO | None = None) -> list[Document]:
    """Every object in `paths`, in order. Empty documents are skipped; Lists are flattened."""
    documents: list[Document] = []
    for path in paths:
        source, text = read_source(path, stdin=stdin)
        index = 0
        for raw in _parse(text, source):
            if raw is None:
                continue
            index += 1
            for obj in _objects(raw, source, index):
                documents.append(Document(source, index, obj))
    return documents


def _objects(raw: Any, source: str, index: int) -> list[dict[str, Any]]:
    """The object a document holds, or the items of a List; InputError for anything else."""
    where = document_where(source, index, raw)
    if not isinstance(raw, dict):
        raise InputError(
            f"{where}: not a Kubernetes object (no kind): the document is {type_name(raw)}, not a mapping"
        )
    if "kind" not in raw:
        raise InputError(f"{where}: not a Kubernetes object (no kind)")
    if str(raw.get("kind", "")).endswith("List") and "items" in raw:
        items = raw["items"]
        if not isinstance(items, list):
            raise InputError(f"{where}: items must be a list, not {type_name(items)}")
        for i, item in enumerate(items):
            _check_object(item, f"{where}, items[{i}]")
        return items
    _check_object(raw, where)
    return [raw]


def _check_object(obj: Any, where: str) -> None:
    if not isinstance(obj, dict) or "kind" not in obj:
        raise InputError(f"{where}: not a Kubernetes object (no kind)")
    if not isinstance(obj.get("kind"), str):
        raise InputError(f"{where}: kind must be a string")
    metadata = obj.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise InputError(f"{where}: metadata must be a mapping, not {type_name(metadata)}")
