"""Rule 1: the resource.k8s.io/v1 shape, from the OpenAPI definitions in schemas/resource-v1.json."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from functools import cache
from importlib import resources
from typing import Any, Final

from kubectl_dra.validate.findings import (
    Report,
)

# --- rule 1: structure from the OpenAPI schema ------------------------------------------------


@cache
def _definitions() -> dict[str, Any]:
    text = (resources.files("kubectl_dra") / "schemas" / "resource-v1.json").read_text()
    definitions: dict[str, Any] = json.loads(text)["definitions"]
    return definitions


_JSON_TYPES: Final[dict[str, type | tuple[type, ...]]] = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "number": (int, float),
}


def _type_ok(value: Any, allowed: Sequence[str]) -> bool:
    for name in allowed:
        if name == "null" and value is None:
            return True
        if name == "integer" and isinstance(value, int) and not isinstance(value, bool):
            return True
        python = _JSON_TYPES.get(name)
        if (
            python
            and isinstance(value, python)
            and not (name == "number" and isinstance(value, bool))
        ):
            return True
    return False


def join_path(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def check_schema(value: Any, schema: Mapping[str, Any], path: str) -> Iterator[tuple[str, str]]:
    """(field path, message) for every place `value` breaks the OpenAPI `schema`."""
    if "$ref" in schema:
        yield from check_schema(value, _definitions()[schema["$ref"]], path)
        return
    if "oneOf" in schema:
        if not any(not list(check_schema(value, s, path)) for s in schema["oneOf"]):
            yield (
                path,
                f"has the wrong type ({type(value).__name__}); expected a quantity such as 1 or 80Gi",
            )
        return
    allowed = schema.get("type")
    if allowed:
        allowed = [allowed] if isinstance(allowed, str) else list(allowed)
        if not _type_ok(value, allowed):
            wanted = " or ".join(t for t in allowed if t != "null")
            yield (
                path,
                f"must be {'an' if wanted[:1] in 'aeiou' else 'a'} {wanted}, not {json.dumps(value)[:60]}",
            )
            return
    if value is None:
        return
    if "enum" in schema and value not in schema["enum"]:
        yield path, f"must be one of {', '.join(map(str, schema['enum']))}"
    if isinstance(value, dict):
        properties: Mapping[str, Any] = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for key in schema.get("required") or ():
            if key not in value:
                yield join_path(path, key), "is required"
        for key, item in value.items():
            if key in properties:
                yield from check_schema(item, properties[key], join_path(path, key))
            elif extra is False:
                known = ", ".join(sorted(properties))
                yield join_path(path, key), f"unknown field {key!r}; the API knows: {known}"
            elif isinstance(extra, dict):
                yield from check_schema(item, extra, join_path(path, key))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            yield from check_schema(item, schema["items"], f"{path}[{i}]")


def check_structure(report: Report, value: Any, definition: str, path: str = "") -> bool:
    """Schema errors into the report; True if the shape is sound enough to go on."""
    problems = list(check_schema(value, {"$ref": definition}, path))
    for where, message in problems:
        report.error(where, message)
    return not problems
