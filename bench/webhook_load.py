"""Load test of the real server: reviews/s and latency over HTTPS with keep-alive, on 127.0.0.1.

    .venv/bin/python bench/webhook_load.py [--seconds 15] [--workers 2] [--threads 4]

Starts `dra-webhook serve --offline` (gunicorn, TLS, JSON logs to a file) with a fresh CA, and
drives POST /mutate with the review of a 1-GPU pod (the common case) using `oha` (open-loop, fixed
rate with latency correction, so a stall is not hidden by a waiting client) at 500 reviews/s,
then at saturation (closed loop, 32 keep-alive connections). Falls back to `wrk` (+ a Lua script)
for saturation only if oha is missing. Installs what is missing: `cargo install oha`, `apt-get
install wrk`. Prints a Markdown table, RSS per gunicorn process, and writes the raw numbers to
bench/results/webhook_load.json.

Everything, server and load generator, shares this machine's cores: the numbers are a floor
for a real deployment, where the API server is the only client.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.builders import container, make_pod, make_review  # noqa: E402
from webhook import certs  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "webhook_load.json"
WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open(os.getenv("REVIEW_FILE"), "rb")
wrk.body = f:read("*a")
f:close()
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "errors": %d, "non2xx": %d, "p50_us": %d, "p99_us": %d, "max_us": %d}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""


def ensure_tool(name: str) -> str | None:
    """The path of `oha` or `wrk`, installing it from the package registries if missing."""
    found = shutil.which(name) or shutil.which(str(Path.home() / ".cargo" / "bin" / name))
    if found:
        return found
    if name == "oha" and shutil.which("cargo"):
        print("installing oha with cargo (a few minutes)...", file=sys.stderr)
        subprocess.run(["cargo", "install", "oha", "--locked"], check=False)
    elif name == "wrk" and shutil.which("apt-get"):
        print("installing wrk with apt-get...", file=sys.stderr)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False)
    return shutil.which(name) or shutil.which(str(Path.home() / ".cargo" / "bin" / name))


def start_server(work: Path, workers: int, threads: int) -> tuple[subprocess.Popen[bytes], int]:
    ca = certs.generate_ca()
    leaf = certs.issue_cert(ca, "bench", ip_addresses=["127.0.0.1"])
    certs.write_tls_dir(work / "tls", leaf=leaf, ca=ca)
    log = work / "server.log"
    argv = [
        sys.executable, "-m", "webhook", "serve", "--offline", "--host=127.0.0.1", "--port=0",
        f"--cert-dir={work / 'tls'}", f"--workers={workers}", f"--threads={threads}",
        "--keepalive=75", f"--metrics-dir={work / 'metrics'}",
    ]  # fmt: skip
    with log.open("wb") as sink:
        proc = subprocess.Popen(argv, stdout=sink, stderr=sink, cwd=ROOT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        match = re.search(r"Listening at: https://127\.0\.0\.1:(\d+)", log.read_text())
        if match and log.read_text().count("Booting worker") >= workers:
            time.sleep(1.0)
            return proc, int(match.group(1))
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"the server did not start:\n{log.read_text()}")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def processes(master: int) -> dict[str, int]:
    """RSS (KiB) of the gunicorn master and each worker."""
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    result = {f"master {master}": rss_kib(master)}
    result |= {f"worker {pid}": rss_kib(int(pid)) for pid in children}
    return result


def run_oha(oha: str, url: str, body: Path, *, seconds: int, rate: int | None) -> dict[str, Any]:
    argv = [
        oha, "--no-tui", "--output-format", "json", "-z", f"{seconds}s", "-w",
        "--cacert", str(body.parent / "tls" / "ca.crt"),
        "-m", "POST", "-T", "application/json", "-D", str(body),
    ]  # fmt: skip
    argv += ["-q", str(rate), "--latency-correction", "-c", "16"] if rate else ["-c", "32"]
    done = subprocess.run([*argv, url], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"oha failed: {done.stderr}")
    data = json.loads(done.stdout)
    summary = data["summary"]
    pct = data["latencyPercentiles"]
    statuses = data.get("statusCodeDistribution", {})
    errors = sum(data.get("errorDistribution", {}).values())
    return {
        "tool": "oha",
        "reviews_per_s": summary["requestsPerSec"],
        "p50_ms": pct["p50"] * 1000,
        "p99_ms": pct["p99"] * 1000,
        "max_ms": summary["slowest"] * 1000,
        "ok": statuses.get("200", 0),
        "failed": errors + sum(v for k, v in statuses.items() if k != "200"),
        "errors": data.get("errorDistribution", {}),
    }


def run_wrk(wrk: str, url: str, body: Path, *, seconds: int) -> dict[str, Any]:
    script = body.with_suffix(".lua")
    script.write_text(WRK_SCRIPT)
    done = subprocess.run(
        [wrk, "-t2", "-c32", f"-d{seconds}s", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "REVIEW_FILE": str(body)},
    )
    line = next(x for x in done.stdout.splitlines() if x.startswith("{"))
    data = json.loads(line)
    return {
        "tool": "wrk",
        "reviews_per_s": data["requests"] / (data["duration_us"] / 1e6),
        "p50_ms": data["p50_us"] / 1000,
        "p99_ms": data["p99_us"] / 1000,
        "max_ms": data["max_us"] / 1000,
        "ok": data["requests"] - data["non2xx"],
        "failed": data["errors"] + data["non2xx"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=15, help="per measurement")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--rate", type=int, default=500, help="the fixed-rate run (reviews/s)")
    parser.add_argument("--tool", choices=["auto", "oha", "wrk"], default="auto")
    args = parser.parse_args()
    oha = ensure_tool("oha") if args.tool in ("auto", "oha") else None
    wrk = None if oha else ensure_tool("wrk")
    if not (oha or wrk):
        raise SystemExit("neither oha nor wrk could be installed")
    work = Path(tempfile.mkdtemp(prefix="webhook-load-"))
    body = work / "review.json"
    pod = make_pod(container("app", gpus=1, limits={"cpu": "4", "memory": "16Gi"}), name=None)
    body.write_text(json.dumps(make_review(pod)))
    proc, port = start_server(work, args.workers, args.threads)
    url = f"https://127.0.0.1:{port}/mutate"
    runs: dict[str, dict[str, Any]] = {}
    load_before = os.getloadavg()[0]
    try:
        if oha:
            run_oha(oha, url, body, seconds=3, rate=None)  # warm-up: imports, caches, TLS
            runs[f"fixed {args.rate}/s"] = run_oha(
                oha, url, body, seconds=args.seconds, rate=args.rate
            )
            runs["saturation"] = run_oha(oha, url, body, seconds=args.seconds, rate=None)
        else:
            assert wrk is not None
            run_wrk(wrk, url, body, seconds=3)
            runs["saturation"] = run_wrk(wrk, url, body, seconds=args.seconds)
        memory = processes(proc.pid)
        load_after = os.getloadavg()[0]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    print(
        f"\n{args.workers} gunicorn workers x {args.threads} threads, {os.cpu_count()} cores "
        "shared with the load generator, 1-GPU pod review over HTTPS keep-alive; "
        f"1-min load average {load_before:.1f} before, {load_after:.1f} after\n"
    )
    print("| run | tool | reviews/s | p50 ms | p99 ms | max ms | ok | failed |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, r in runs.items():
        print(
            f"| {name} | {r['tool']} | {r['reviews_per_s']:,.0f} | {r['p50_ms']:.2f} | "
            f"{r['p99_ms']:.2f} | {r['max_ms']:.1f} | {r['ok']} | {r['failed']} |"
        )
    print("\n| process | RSS MiB |\n| --- | ---: |")
    for name, kib in memory.items():
        print(f"| {name} | {kib / 1024:.1f} |")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "workers": args.workers,
                "threads": args.threads,
                "cpus": os.cpu_count(),
                "load_average": [load_before, load_after],
                "runs": runs,
                "rss_kib": memory,
            },
            indent=2,
        )
        + "\n"
    )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
