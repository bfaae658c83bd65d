"""Turning objects into text (pure): YAML streams, JSON Lists."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import yaml


class _Dumper(yaml.SafeDumper):
    """Block-style YAML that keeps key order and never emits anchors."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str_presenter(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str_presenter)


def to_yaml(obj: Any) -> str:
    return yaml.dump(obj, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120)


def to_yaml_stream(objects: Sequence[Any]) -> str:
    return "---\n".join(to_yaml(obj) for obj in objects)


def to_json(obj: Any) -> str:
    return json.dumps(obj, indent=2) + "\n"


def to_json_list(objects: Sequence[Any]) -> str:
    return to_json({"apiVersion": "v1", "kind": "List", "items": list(objects)})
