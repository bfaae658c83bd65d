"""Lines for long-running scripts such as `make demo`: elapsed time while a step builds, a
heading per scenario saying what it shows, and a verdict; none wider than the terminal allows.

Pure text helpers plus one small ticker; the clock, the wait and the stream are injected, so
tests drive them without sleeping.
"""

from __future__ import annotations

import sys
import textwrap
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Final, TextIO

from kubectl_dra.table import safe_cell

DEMO_WIDTH: Final = 120


def format_duration(seconds: float) -> str:
    """42s, 3m 05s, 1h 02m."""
    whole = max(int(seconds), 0)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def fit(text: str, *, width: int = DEMO_WIDTH, indent: str = "") -> str:
    """`text` wrapped to `width` columns, continuation lines indented; controls escaped."""
    lines = textwrap.wrap(safe_cell(text), width, subsequent_indent=indent, break_on_hyphens=False)
    return "\n".join(lines or [""])


def scenario_heading(label: str, shows: str, *, width: int = DEMO_WIDTH) -> str:
    """`==> 02 intra-pod sharing: two containers of one pod share one GPU`, wrapped."""
    return fit(f"==> {label}: {shows}", width=width, indent="    ")


def verdict(ok: bool, detail: str, *, width: int = DEMO_WIDTH) -> str:
    """`    PASS  both containers see gpu-3` or `    FAIL  ...`, wrapped under the detail."""
    return fit(f"    {'PASS' if ok else 'FAIL'}  {detail}", width=width, indent=" " * 10)


class Elapsed:
    """Prints `    ... <what>: 2m 30s elapsed` every `every` seconds while the block runs, then
    `    <what>: done in 3m 05s` (or `failed after`).

    with Elapsed("building Kubernetes from source"):
        cluster.up()
    """

    def __init__(
        self,
        what: str,
        *,
        every: float = 30.0,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        width: int = DEMO_WIDTH,
    ) -> None:
        self.what = what
        self.every = every
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock
        self.width = width
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = 0.0

    def line(self, *, finished: bool | None = None) -> str:
        """The line to print now: a tick (finished None), or the end of the step."""
        spent = format_duration(self.clock() - self._started)
        if finished is None:
            text = f"    ... {self.what}: {spent} elapsed"
        else:
            text = f"    {self.what}: {'done in' if finished else 'failed after'} {spent}"
        return fit(text, width=self.width, indent="        ")

    def tick(self) -> None:
        print(self.line(), file=self.stream, flush=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.tick()

    def __enter__(self) -> Elapsed:
        self._started = self.clock()
        self._thread = threading.Thread(target=self._run, name="elapsed", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        print(self.line(finished=kind is None), file=self.stream, flush=True)
