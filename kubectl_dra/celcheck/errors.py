"""What checking a selector can report: a refusal (CelError) or problems on a compiled one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]


class CelError(Exception):
    """An expression that cannot be compiled; the message says where and why."""


class CelTooExpensive(CelError):
    """The expression is beyond what may be checked or run; the message says which bound."""


@dataclass(frozen=True, slots=True)
class Problem:
    severity: Severity
    message: str
