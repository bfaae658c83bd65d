"""Latency and memory of the real server at a fixed rate, then its throughput at saturation.

    .venv/bin/python -m bench.webhook_load [--seconds 60] [--rate 500] [--workers 2]

Starts `dra-webhook serve --offline` (the default configuration: 2 workers, TLS, JSON logs to a
file) with a fresh CA and drives POST /mutate with the review of a 1-GPU pod using `oha`: first
open-loop at a fixed rate with latency correction (a stall is not hidden by a waiting client)
for `--seconds`, sampling the RSS of the master and workers every 5 s; then closed-loop at
saturation (32 keep-alive connections) for 10 s. Installs oha with cargo if it is missing.
Prints a Markdown table and the RSS samples; writes the raw numbers to
bench/results/webhook_load.json.

Everything, server and load generator, shares this machine's cores: the numbers are a floor
for a real deployment, where the API server is the only client.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.bench_server import BenchServer, review_body

ROOT = Path(__file__).resolve().parents[1]

RESULTS = ROOT / "bench" / "results" / "webhook_load.json"


def ensure_oha() -> str:
    """The path of `oha`, installed from crates.io with cargo if missing."""
    cargo_bin = Path.home() / ".cargo" / "bin"
    found = shutil.which("oha") or shutil.which(str(cargo_bin / "oha"))
    cargo = shutil.which("cargo") or shutil.which(str(cargo_bin / "cargo"))
    if not found and cargo:
        print("installing oha with cargo (a few minutes)...", file=sys.stderr)
        subprocess.run([cargo, "install", "oha", "--locked"], check=False)
        found = shutil.which("oha") or shutil.which(str(cargo_bin / "oha"))
    if not found:
        raise SystemExit("oha is not installed and cargo could not install it")
    return found


def run_oha(
    oha: str, server: BenchServer, body: Path, *, seconds: float, rate: int | None
) -> dict[str, Any]:
    argv = [
        oha, "--no-tui", "--output-format", "json", "-z", f"{seconds:g}s", "-w",
        "--cacert", str(server.cert_dir / "ca.crt"),
        "-m", "POST", "-T", "application/json", "-D", str(body),
    ]  # fmt: skip
    argv += ["-q", str(rate), "--latency-correction", "-c", "16"] if rate else ["-c", "32"]
    done = subprocess.run(
        [*argv, f"https://127.0.0.1:{server.port}/mutate"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"oha failed: {done.stderr}")
    data = json.loads(done.stdout)
    summary = data["summary"]
    pct = data["latencyPercentiles"]
    statuses = data.get("statusCodeDistribution", {})
    errors = sum(data.get("errorDistribution", {}).values())
    return {
        "reviews_per_s": summary["requestsPerSec"],
        "p50_ms": pct["p50"] * 1000,
        "p99_ms": pct["p99"] * 1000,
        "max_ms": summary["slowest"] * 1000,
        "ok": statuses.get("200", 0),
        "failed": errors + sum(v for k, v in statuses.items() if k != "200"),
    }


def total_rss(server: BenchServer) -> float:
    return sum(server.rss_mib().values())


def measure(seconds: float, rate: int, workers: int) -> dict[str, Any]:
    oha = ensure_oha()
    with BenchServer(workers=workers) as server:
        body = server.work / "review.json"
        body.write_bytes(review_body())
        run_oha(oha, server, body, seconds=3, rate=None)  # warm-up: imports, caches, TLS
        samples: list[tuple[float, float]] = []
        stop = threading.Event()

        def sample() -> None:
            started = time.monotonic()
            while not stop.wait(5 if samples else 1):
                samples.append((time.monotonic() - started, total_rss(server)))

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            fixed = run_oha(oha, server, body, seconds=seconds, rate=rate)
        finally:
            stop.set()
            sampler.join()
        saturation = run_oha(oha, server, body, seconds=10, rate=None)
        return {
            "workers": workers,
            "fixed": fixed,
            "saturation": saturation,
            "rss_samples": samples,
            "rss_end": server.rss_mib(),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60, help="of the fixed-rate run")
    parser.add_argument("--rate", type=int, default=500, help="reviews/s of the fixed-rate run")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    result = measure(args.seconds, args.rate, args.workers)
    print(
        f"\n{args.workers} workers, {os.cpu_count()} cores shared with oha, 1-GPU pod review "
        f"over HTTPS keep-alive; load average {load:.1f} before\n"
    )
    print("| run | reviews/s | p50 ms | p99 ms | max ms | ok | failed |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, r in (
        ("fixed " + str(args.rate) + "/s", result["fixed"]),
        ("saturation", result["saturation"]),
    ):
        print(
            f"| {name} | {r['reviews_per_s']:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
            f"{r['max_ms']:.1f} | {r['ok']} | {r['failed']} |"
        )
    rss = ", ".join(f"{t:.0f}s {mib:.1f}" for t, mib in result["rss_samples"])
    print(f"\nRSS of master + workers (MiB) during the fixed-rate run: {rss}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
