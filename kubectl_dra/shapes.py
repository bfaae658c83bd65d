"""The shape of a pod template: every field the rewrite and the checks read has the JSON type
the API gives it. A manifest with `containers: 5` is the author's mistake, reported as one line
with the field path, before any code that trusts the shape runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

_MAPPING: Final = "a mapping"
_LIST_OF_MAPPINGS: Final = "a list of mappings"
_STRING_MAP: Final = "a mapping of strings to strings"

_METADATA: Final = {"annotations": _STRING_MAP, "labels": _STRING_MAP}
_SPEC: Final = {
    "resourceClaims": _LIST_OF_MAPPINGS,
    "tolerations": _LIST_OF_MAPPINGS,
    "nodeSelector": _STRING_MAP,
    "affinity": _MAPPING,
    "resources": _MAPPING,
}
CONTAINER_GROUPS: Final = ("initContainers", "containers", "ephemeralContainers")
_RESOURCES: Final = {"limits": _MAPPING, "requests": _MAPPING, "claims": _LIST_OF_MAPPINGS}


def type_name(value: Any) -> str:
    """`a list`, `an int`, `a str`: the JSON value's Python type, for messages."""
    name = "list" if isinstance(value, list) else type(value).__name__
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def _wrong(value: Any, wanted: str) -> bool:
    if wanted == _MAPPING:
        return not isinstance(value, dict)
    if wanted == _LIST_OF_MAPPINGS:
        return not isinstance(value, list) or not all(isinstance(v, dict) for v in value)
    return not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    )


Problem = tuple[str, str]  # field path, what is wrong with it


def _fields(obj: dict[str, Any], table: dict[str, str], path: str) -> Iterator[Problem]:
    for key, wanted in table.items():
        value = obj.get(key)
        if value is not None and _wrong(value, wanted):
            yield f"{path}{key}", f"must be {wanted}, not {type_name(value)}"


def pod_template_problems(template: Any, prefix: str = "") -> list[Problem]:
    """(field path, "must be ..., not ...") for each field of the template with the wrong type."""
    if not isinstance(template, dict):
        return [(prefix.rstrip(".") or "(object)", f"must be a mapping, not {type_name(template)}")]
    problems: list[Problem] = []
    metadata, spec = template.get("metadata"), template.get("spec")
    for key, value in (("metadata", metadata), ("spec", spec)):
        if value is not None and not isinstance(value, dict):
            problems.append((f"{prefix}{key}", f"must be a mapping, not {type_name(value)}"))
    if isinstance(metadata, dict):
        problems += _fields(metadata, _METADATA, f"{prefix}metadata.")
    if not isinstance(spec, dict):
        return problems
    problems += _fields(spec, _SPEC, f"{prefix}spec.")
    for group in CONTAINER_GROUPS:
        containers = spec.get(group)
        if containers is None:
            continue
        if _wrong(containers, _LIST_OF_MAPPINGS):
            problems.append((f"{prefix}spec.{group}", f"must be {_LIST_OF_MAPPINGS}"))
            continue
        for i, container in enumerate(containers):
            path = f"{prefix}spec.{group}[{i}]."
            name = container.get("name")
            if name is not None and not isinstance(name, str):
                problems.append((f"{path}name", f"must be a string, not {type_name(name)}"))
            resources = container.get("resources")
            if resources is None:
                continue
            if not isinstance(resources, dict):
                problems.append(
                    (f"{path}resources", f"must be a mapping, not {type_name(resources)}")
                )
                continue
            problems += _fields(resources, _RESOURCES, f"{path}resources.")
    return problems
