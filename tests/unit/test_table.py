"""table.py: tables that fit the terminal, shortened cells that stay distinct, escaping."""

from __future__ import annotations

import json

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from kubectl_dra import render
from kubectl_dra.report import build_claim_reports, build_node_reports, build_pod_reports
from kubectl_dra.table import Column, format_table, plan_table, safe_cell, shorten_middle
from tests.builders import sample_cluster

# C0 and C1 controls, DEL, bidi embeddings, overrides and isolates, LRM and RLM.
TERMINAL_CONTROLS = [
    *map(chr, range(0x20)),
    "\x7f",
    *map(chr, range(0x80, 0xA0)),
    *map(chr, range(0x202A, 0x202F)),
    *map(chr, range(0x2066, 0x206A)),
    "\u200e",
    "\u200f",
]

names = st.text(
    alphabet=st.sampled_from("abcdefghij-0123456789"), min_size=1, max_size=60
) | st.sampled_from(["gpu-a100-aaaa-node-17", "gpu-a100-bbbb-node-17", "x" * 250])
prose = st.lists(st.sampled_from(["the", "device", "gpu.nvidia.com", "is", "free"]), max_size=40)
COLUMNS = [
    Column("NAME"),
    Column("NODE", priority=1),
    Column("MODEL", priority=2),
    Column("STATE"),
    Column("MESSAGE", wrap=True),
]
rows_strategy = st.lists(
    st.tuples(names, names, names, st.sampled_from(["free", "allocated"]), prose.map(" ".join)),
    min_size=1,
    max_size=12,
)


def widest(text: str) -> int:
    return max(len(line) for line in text.splitlines())


@settings(max_examples=150, deadline=None)
@given(rows=rows_strategy, width=st.integers(40, 300))
def test_a_table_fits_the_width_unless_nothing_more_can_go(
    rows: list[tuple[str, ...]], width: int
) -> None:
    text = format_table(COLUMNS, rows, width=width)
    if widest(text) > width:
        # Only when the table is already as narrow as it can get: the same as for width 1.
        assert text == format_table(COLUMNS, rows, width=1)


@settings(max_examples=150, deadline=None)
@given(rows=rows_strategy, width=st.integers(1, 300))
def test_distinct_rows_stay_distinct_however_narrow(
    rows: list[tuple[str, ...]], width: int
) -> None:
    layout = plan_table(COLUMNS, rows, width=width)
    assert len(set(layout.rows)) == len(set(rows))


@settings(max_examples=100, deadline=None)
@given(rows=rows_strategy, width=st.integers(40, 300))
def test_prose_wraps_and_loses_no_word(rows: list[tuple[str, ...]], width: int) -> None:
    text = format_table(COLUMNS, rows, width=width)
    shown = text.split()
    for row in rows:
        for word in row[4].split():
            assert word in shown


def test_a_shortened_name_keeps_the_end_that_tells_it_apart() -> None:
    assert shorten_middle("gpu-a100-aaaa-node-17", 18) == "gpu-a100…a-node-17"
    assert shorten_middle("short", 18) == "short"
    rows = [["gpu-a100-aaaa-node-17", "x" * 90], ["gpu-a100-bbbb-node-17", "y" * 90]]
    text = format_table([Column("NODE"), Column("OTHER")], rows, width=40)
    first, second = (line.split()[0] for line in text.splitlines()[1:])
    assert first != second
    assert first.endswith("node-17") and "…" in first


def test_low_priority_columns_drop_first_and_wide_shows_every_column() -> None:
    columns = [Column("NAME"), Column("EXTRA", priority=2), Column("MORE", priority=1)]
    rows = [["a" * 20, "b" * 20, "c" * 20]]
    assert format_table(columns, rows, width=50).split()[:2] == ["NAME", "MORE"]
    assert format_table(columns, rows, width=30).split()[0:1] == ["NAME"]
    assert "EXTRA" not in format_table(columns, rows, width=30)
    assert format_table(columns, rows, width=None).split()[:3] == ["NAME", "EXTRA", "MORE"]


def test_a_column_is_kept_when_dropping_it_would_make_two_rows_look_the_same() -> None:
    columns = [Column("POD"), Column("DEVICE", priority=1)]
    text = format_table(columns, [["p", "gpu-0" * 10], ["p", "gpu-1" * 10]], width=10)
    assert "DEVICE" in text


@pytest.mark.parametrize("control", TERMINAL_CONTROLS)
def test_every_terminal_control_is_escaped_in_a_table(control: str) -> None:
    row = format_table(["NAME"], [[f"a{control}b"]], width=80).split("\n")[1]
    assert row.startswith("a\\") and row.endswith("b")
    assert row.isascii() and row.isprintable()
    assert safe_cell(f"a{control}b") == row


@pytest.mark.parametrize("control", TERMINAL_CONTROLS)
def test_json_and_yaml_escape_terminal_controls_and_stay_faithful(control: str) -> None:
    document = {"items": [{"name": f"pod{control}x", "note": f"line{control}\nnext"}]}
    as_json = render.format_document(document, "json")
    as_yaml = render.format_document(document, "yaml")
    for text in (as_json, as_yaml):
        assert all(line.isprintable() for line in text.split("\n"))
    assert json.loads(as_json) == document
    assert yaml.safe_load(as_yaml) == document


@pytest.mark.parametrize("width", [40, 60, 80, 100, 120, 160, 200, 300])
def test_describe_tables_fit_or_are_as_narrow_as_they_get(width: int) -> None:
    fake = sample_cluster()
    pods = build_pod_reports(fake.pods, fake.claims, fake.slices)
    claims = build_claim_reports(fake.claims, fake.slices)
    nodes = build_node_reports(fake.slices, fake.claims)
    for view in (
        lambda w: render.render_pods(pods, wide=False, namespaces=True, width=w),
        lambda w: render.render_claims(claims, wide=False, namespaces=True, width=w),
        lambda w: render.render_nodes(nodes, wide=False, width=w),
    ):
        text = view(width)
        assert widest(text) <= width or text == view(1)
        assert len(text.splitlines()) == len(view(None).splitlines())  # no row lost
