"""What fitting describe's tables to the terminal costs, in process (no cluster).

    .venv/bin/python -m bench.table_bench [--pods 4000] [--repeat 5]

Builds the pods view of `--pods` pods (each a template claim on one of 1,000 nodes x 8 GPUs,
names as long as real ones), then times render_pods as `-o wide` (every column, no fitting)
and fitted to 80, 120 and 200 columns (median of --repeat runs), and prints the widest line.
Nothing is asserted: the numbers are for docs and reviews.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections.abc import Callable

from kubectl_dra import render
from kubectl_dra.report import PodClaim, PodReport, RequestRow, Sharing


def pods(count: int) -> list[PodReport]:
    reports = []
    for n in range(count):
        node, gpu = divmod(n, 8)
        row = RequestRow(
            request="gpu",
            device_class="gpu.nvidia.com",
            count=None,
            driver="gpu.nvidia.com",
            pool=f"gpu-a100-rack-{node // 40:02d}-node-{node:04d}",
            device=f"gpu-{gpu}",
            node=f"gpu-a100-rack-{node // 40:02d}-node-{node:04d}",
            model="NVIDIA A100-SXM4-80GB",
            uuid=f"GPU-{n:08x}-5b1c-4e7a-9f00-{n:012x}",
            memory="80Gi",
            sharing=Sharing("TimeSlicing", "FromClaim") if n % 3 == 0 else None,
            containers=("trainer", "sidecar"),
        )
        claim = PodClaim(
            name="gpu",
            origin="template",
            source="kubectl-dra-1a2b3c4d5e",
            claim=f"training-job-{n:05d}-gpu-x7k2p",
            state="reserved",
            reserved_for=(f"training-job-{n:05d}",),
            requests=(row,),
        )
        reports.append(
            PodReport("ml-research", f"training-job-{n:05d}", row.node, "Running", None, (claim,))
        )
    return reports


def median_ms(run: Callable[[], str], repeat: int) -> tuple[float, str]:
    times, text = [], ""
    for _ in range(repeat):
        started = time.perf_counter()
        text = run()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=4000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    reports = pods(args.pods)
    print(f"describe pods -A, {args.pods} pods ({args.repeat} runs, median)")
    cases: list[tuple[str, Callable[[], str]]] = [
        ("-o wide (no fitting)", lambda: render.render_pods(reports, wide=True, namespaces=True))
    ]
    for width in (80, 120, 200):
        cases.append(
            (
                f"fitted to {width} columns",
                functools.partial(
                    render.render_pods, reports, wide=False, namespaces=True, width=width
                ),
            )
        )
    for label, run in cases:
        ms, text = median_ms(run, args.repeat)
        widest = max(len(line) for line in text.splitlines())
        print(f"  {label:<24} {ms:8.1f} ms   widest line {widest:4d}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
