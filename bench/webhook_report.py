"""Every performance figure of the webhook in one run, against its targets (`make bench-webhook`).

    .venv/bin/python -m bench.webhook_report [--quick]

1. CPU per review and reviews per CPU-second: the real server, one worker pinned to CPU 0, the
   load on CPU 1, HTTPS keep-alive (bench/cpu_per_review.py).
2. p50 and p99 at a fixed 500 reviews/s on the default 2-worker configuration, the RSS of
   master and workers over that 60 s run, and reviews/s at saturation (bench/webhook_load.py).
3. Pod creation through the real API server: legacy pods with the webhook vs the same pods
   pre-converted in a namespace no webhook selects, and CPU-only pods with and without it, one
   client and 8 concurrent clients, medians of interleaved batches; and the floor, a Go webhook
   that allows everything unchanged vs no webhook (bench/api_overhead.py, bench/nullwebhook).

Prints a table of each figure, its target and whether it holds, then writes everything to
bench/results/webhook_report.json. `--quick` shortens every run (for trying the script, not
for numbers). About 12 minutes on this 2-core machine with the control plane already built.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from bench import api_overhead, cpu_per_review, webhook_load

ROOT = Path(__file__).resolve().parents[1]

RESULTS = ROOT / "bench" / "results" / "webhook_report.json"


def row(name: str, value: float, unit: str, target: float, *, at_most: bool = True) -> str:
    holds = value <= target if at_most else value >= target
    sign = "<=" if at_most else ">="
    return (
        f"| {name} | {value:,.2f} {unit} | {sign} {target:,g} {unit} | {'yes' if holds else 'NO'} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    quick = args.quick
    load = os.getloadavg()[0]
    print("1/3 CPU per review (one pinned worker)...", flush=True)
    cpu = cpu_per_review.measure(3 if quick else 10, 16)
    print("2/3 latency at 500 reviews/s and memory (2 workers)...", flush=True)
    latency = webhook_load.measure(10 if quick else 60, 500, 2)
    print("3/3 pod creation through the API server...", flush=True)
    pods = api_overhead.measure(10 if quick else 25, 2 if quick else 8, (1, 8))
    results: dict[str, Any] = {"load_average": load, "cpu": cpu, "latency": latency, "pods": pods}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")

    rss = [mib for _, mib in latency["rss_samples"]]
    lines = [
        "| figure | measured | target | holds |",
        "| --- | ---: | ---: | --- |",
    ]
    for label, _ in cpu_per_review.SHAPES:
        lines.append(row(f"CPU per review, {label}", cpu[label]["cpu_ms"], "ms", 0.6))
        lines.append(
            row(
                f"reviews per CPU-second, {label}",
                cpu[label]["per_core"],
                "/s",
                1600,
                at_most=False,
            )
        )
    lines.append(row("p50 at 500 reviews/s", latency["fixed"]["p50_ms"], "ms", 5))
    lines.append(row("p99 at 500 reviews/s", latency["fixed"]["p99_ms"], "ms", 5))
    lines.append(row("failed reviews at 500/s", latency["fixed"]["failed"], "", 0))
    lines.append(row("RSS, master + 2 workers, most under load", max(rss), "MiB", 150))
    lines.append(row("RSS growth over the fixed-rate run", rss[-1] - rss[0], "MiB", 5))
    lines.append(
        f"| reviews/s at saturation, 2 workers | {latency['saturation']['reviews_per_s']:,.0f} | | |"
    )
    for clients, target in (("1 client(s)", 1.25), ("8 client(s)", 1.5)):
        med = pods[clients]
        lines.append(
            row(f"pod creation legacy/converted, {clients}", med["legacy/converted"], "x", target)
        )
        lines.append(
            row(
                f"pod creation CPU-only with/without, {clients}", med["cpu with/without"], "x", 1.02
            )
        )
        lines.append(
            f"| webhook CPU per legacy pod, {clients} | {med['webhook CPU ms/pod']:.2f} ms | | |"
        )
        lines.append(
            f"| the floor: a Go webhook that changes nothing vs none, {clients} | "
            f"{med['null webhook/none']:.2f} x | | |"
        )
    lines.append(
        f"| webhook RSS after the pod runs (online) | {pods['webhook RSS MiB']:.1f} MiB | | |"
    )
    print(f"\nload average {load:.1f} at the start; {os.cpu_count()} cores\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
