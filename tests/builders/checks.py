"""Assertions and helpers shared by the test layers."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import kubernetes_validate

SCHEMA_VERSION = "1.34"  # the first release with resource.k8s.io/v1; what we promise to emit


def assert_valid(*objects: dict[str, Any]) -> None:
    """Strict schema validation at Kubernetes 1.34 (raises ValidationError with the path)."""
    for obj in objects:
        kubernetes_validate.validate(obj, SCHEMA_VERSION, strict=True)


def wait_for(
    predicate: Callable[[], Any], *, timeout: float = 15.0, interval: float = 0.05, what: str = ""
) -> Any:
    """Poll `predicate` until it returns something truthy; fail naming `what` and the last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout:.0f}s waiting for {what or predicate}; last: {last!r}"
    )


def column(table: str, header: str) -> list[str]:
    """The cells of one table column, found by the header's offset (as a reader would)."""
    lines = table.splitlines()
    start = lines[0].index(header)
    return [line[start:].split("   ")[0].strip() for line in lines[1:] if line.strip()]
