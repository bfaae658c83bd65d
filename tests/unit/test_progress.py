"""progress.py: elapsed-time lines, scenario headings and verdicts for make demo."""

from __future__ import annotations

import io

import pytest

from kubectl_dra.progress import DEMO_WIDTH, Elapsed, format_duration, scenario_heading, verdict


@pytest.mark.parametrize(
    ("seconds", "shown"), [(0, "0s"), (42.9, "42s"), (185, "3m 05s"), (3720, "1h 02m")]
)
def test_durations_read_like_a_stopwatch(seconds: float, shown: str) -> None:
    assert format_duration(seconds) == shown


def test_elapsed_says_how_long_a_step_has_taken_and_how_it_ended() -> None:
    now = [100.0]
    out = io.StringIO()
    # A wait far longer than the test: only the explicit ticks below print.
    with Elapsed("building kube-apiserver", every=3600, stream=out, clock=lambda: now[0]) as step:
        now[0] = 250.0
        step.tick()
        now[0] = 400.0
    assert out.getvalue().splitlines() == [
        "    ... building kube-apiserver: 2m 30s elapsed",
        "    building kube-apiserver: done in 5m 00s",
    ]


def test_elapsed_says_failed_when_the_step_raises() -> None:
    out = io.StringIO()
    with pytest.raises(RuntimeError), Elapsed("etcd", every=3600, stream=out, clock=lambda: 0.0):
        raise RuntimeError("boom")
    assert out.getvalue() == "    etcd: failed after 0s\n"


def test_headings_and_verdicts_stay_within_120_columns_and_escape_controls() -> None:
    shows = "two containers of one pod share one GPU through one claim, " * 5 + "\x1b[2J"
    heading = scenario_heading("02 intra-pod sharing", shows)
    result = verdict(False, "container b saw no GPU_DEVICE_* variable; " * 6)
    for text in (heading, result):
        assert max(map(len, text.splitlines())) <= DEMO_WIDTH
        assert "\x1b" not in text
    assert heading.startswith("==> 02 intra-pod sharing: two containers")
    assert result.startswith("    FAIL  container b")
    assert verdict(True, "ok").strip() == "PASS  ok"
