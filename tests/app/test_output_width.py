"""Output that fits: describe and audit tables through the CLI, for terminals 40 to 300 wide."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner, Result

from kubectl_dra.cli import cli
from tests.app.test_cli_audit import AuditFake
from tests.builders import sample_cluster


def invoke(fake: object, *args: str, columns: int) -> Result:
    return CliRunner().invoke(
        cli, list(args), obj=fake, prog_name="kubectl dra", env={"COLUMNS": str(columns)}
    )


def widest(text: str) -> int:
    return max(len(line) for line in text.splitlines())


@pytest.mark.parametrize("columns", [60, 80, 100, 120, 200, 300])
@pytest.mark.parametrize(
    "args",
    [["describe", "pods", "-A"], ["describe", "claims", "-A"], ["describe", "nodes"], ["describe"]],
)
def test_describe_tables_fit_the_terminal(args: list[str], columns: int) -> None:
    result = invoke(sample_cluster(), *args, columns=columns)
    assert result.exit_code == 0, result.stderr
    assert widest(result.stdout) <= columns


def test_wide_ignores_the_terminal_width() -> None:
    narrow = invoke(sample_cluster(), "describe", "pods", "-A", "-o", "wide", columns=40)
    assert widest(narrow.stdout) > 40
    assert "RESOURCECLAIM" in narrow.stdout and "UUID" in narrow.stdout


@pytest.mark.parametrize("columns", [80, 100, 120, 160])
def test_audit_fits_the_terminal_and_its_findings_wrap_whole(columns: int) -> None:
    result = invoke(AuditFake(), "audit", columns=columns)
    assert result.exit_code == 0, result.output
    tables = result.stdout.split("\n\n", 1)[1]  # the summary before it is one line of prose
    assert widest(tables) <= columns
    document = json.loads(invoke(AuditFake(), "audit", "-o", "json", columns=columns).stdout)
    assert document["findings"]
    # A wrapped message continues alone on the next lines, so the words read on in order.
    flowing = " ".join(tables[tables.index("SEVERITY") :].split())
    for finding in document["findings"]:
        assert " ".join(finding["message"].split()) in flowing
