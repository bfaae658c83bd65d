"""Presentation of findings: the aligned text table and the summary line."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from kubectl_dra.documents import Document
from kubectl_dra.render import align_columns
from kubectl_dra.validate.findings import (
    SEVERITIES,
    Finding,
    plural,
)
from kubectl_dra.validate.rules import is_checked


def has_errors(findings: Iterable[Finding]) -> bool:
    return any(f.severity == "error" for f in findings)


def format_findings(findings: Sequence[Finding]) -> str:
    """One line per finding, columns aligned: SEVERITY  OBJECT  FIELD  MESSAGE."""
    if not findings:
        return ""
    return align_columns([[f.severity, f.object, f.field, f.message] for f in findings], gap="  ")


def summarize(findings: Sequence[Finding], *, documents: Sequence[Document]) -> str:
    """The stderr line after the findings: what was checked, counts per severity."""
    checked = sum(is_checked(d.object) for d in documents)
    skipped = len(documents) - checked
    what = (
        plural(checked, "object")
        + " checked"
        + (f", {skipped} skipped (other kinds)" if skipped else "")
    )
    if not findings:
        return f"{what}: no problems found."
    counts = Counter(f.severity for f in findings)
    return f"{what}: {', '.join(plural(counts[s], s) for s in SEVERITIES if counts[s])}."
