"""Regenerate kubectl_dra/schemas/resource-v1.json from the schemas kubernetes-validate ships.

`kubectl dra validate` checks the shape of ResourceClaim, ResourceClaimTemplate and DeviceClass
(and of a pod's claim references) against the API's own OpenAPI definitions (Kubernetes 1.34, strict: unknown fields are errors)
instead of a hand-written field list. kubernetes-validate is a test dependency only, so the few
definitions we need are copied into the package, descriptions dropped. Run after bumping the
schema version:

    .venv/bin/python -m hack.gen_dra_schema
"""

from __future__ import annotations

import json
import sys
from importlib import resources
from pathlib import Path
from typing import Any

SCHEMA_VERSION = "v1.34.0-local-strict"
ROOTS = (
    "io.k8s.api.resource.v1.ResourceClaim",
    "io.k8s.api.resource.v1.ResourceClaimTemplate",
    "io.k8s.api.resource.v1.DeviceClass",
    # The DRA parts of a pod: spec.resourceClaims[] and containers[].resources.claims[].
    "io.k8s.api.core.v1.PodResourceClaim",
    "io.k8s.api.core.v1.ResourceClaim",
)
OUTPUT = Path(__file__).resolve().parent.parent / "kubectl_dra" / "schemas" / "resource-v1.json"
_DROP = {"description", "x-kubernetes-patch-strategy", "x-kubernetes-patch-merge-key"}


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"].rsplit("/", 1)[-1]} if "$ref" in node else set()
        for value in node.values():
            found |= _refs(value)
        return found
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node)) if node else set()
    return set()


def _strip(node: Any) -> Any:
    if isinstance(node, dict):
        out = {k: _strip(v) for k, v in node.items() if k not in _DROP}
        if "$ref" in out:
            out["$ref"] = out["$ref"].rsplit("/", 1)[-1]
        return out
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def build() -> dict[str, Any]:
    """The closure of ROOTS over `$ref`, as {"version", "definitions": {name: schema}}."""
    base = resources.files("kubernetes_validate") / "kubernetes-json-schema" / SCHEMA_VERSION
    definitions: dict[str, Any] = json.loads((base / "_definitions.json").read_text())["$defs"]
    wanted: dict[str, Any] = {}
    todo = list(ROOTS)
    while todo:
        name = todo.pop()
        if name in wanted:
            continue
        wanted[name] = _strip(definitions[name])
        todo.extend(sorted(_refs(definitions[name]) - set(wanted)))
    return {"version": SCHEMA_VERSION, "definitions": dict(sorted(wanted.items()))}


def render() -> str:
    return json.dumps(build(), indent=1, sort_keys=True) + "\n"


def main() -> int:
    OUTPUT.write_text(render())
    print(f"wrote {OUTPUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
