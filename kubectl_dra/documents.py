"""Reading manifests: multi-document YAML or JSON files, `-` for stdin, `List` kinds flattened."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from kubectl_dra.errors import InputError
from webhook.core import yamlinput


@dataclass(frozen=True, slots=True)
class Document:
    source: str  # file name, or "stdin"
    index: int  # 1-based position of the document in its source
    object: dict[str, Any]

    @property
    def where(self) -> str:
        return f"{self.source}, document {self.index}"


def describe(obj: dict[str, Any]) -> str:
    """`Deployment "ns/name"`, as kubectl names objects in messages."""
    metadata = obj.get("metadata") or {}
    name = metadata.get("name") or metadata.get("generateName") or "(unnamed)"
    namespace = metadata.get("namespace")
    return (
        f'{obj.get("kind", "object")} "{namespace}/{name}"'
        if namespace
        else f'{obj.get("kind", "object")} "{name}"'
    )


def _parse(text: str, source: str) -> Iterator[Any]:
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        try:
            yield json.loads(text)
            return
        except json.JSONDecodeError:
            pass  # YAML is a superset of JSON; let the YAML parser report the error
    try:
        yield from yamlinput.load_all(text)
    except yamlinput.YamlInputError as exc:
        raise InputError(f"{source}: {exc}") from None


def load_documents(paths: Iterable[str], *, stdin: TextIO | None = None) -> list[Document]:
    """Every object in `paths`, in order. Empty documents are skipped; Lists are flattened."""
    documents: list[Document] = []
    for path in paths:
        if path == "-":
            source, text = "stdin", (stdin or sys.stdin).read()
        else:
            source = path
            try:
                text = Path(path).read_text()
            except OSError as exc:
                raise InputError(f"{path}: cannot read: {exc.strerror}") from None
        index = 0
        for raw in _parse(text, source):
            if raw is None:
                continue
            index += 1
            items = (
                raw.get("items")
                if isinstance(raw, dict) and str(raw.get("kind", "")).endswith("List")
                else None
            )
            for obj in items if isinstance(items, list) else [raw]:
                if not isinstance(obj, dict) or "kind" not in obj:
                    raise InputError(
                        f"{source}, document {index}: not a Kubernetes object (no kind)"
                    )
                documents.append(Document(source, index, obj))
    return documents
