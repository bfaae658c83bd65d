"""Where a review's CPU goes: py-spy samples of one pinned worker at saturation, by layer.

    .venv/bin/python -m bench.profile_review [--seconds 12] [--gpus 1] [--containers 1]

Starts the real server like bench/cpu_per_review.py (one worker on CPU 0, the load on CPU 1),
records the thread holding the GIL with py-spy (`--gil`, 200 Hz, native frames included), and
sorts every sample into the innermost layer its stack passes through. Prints the table that
docs/performance.md shows. Installs py-spy into the venv if it is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from bench.bench_server import BenchServer, review_body
from bench.cpu_per_review import drive, pin

ROOT = Path(__file__).resolve().parents[1]

# (layer, substrings of a frame), tried innermost frame first; the first match names the sample.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("TLS reads and writes", ("ssl.py", "sslproto", "_ssl", "SSL_", "ssl3_", "tls1")),
    ("JSON decode and encode", ("json/", "orjson", "review.py:decode_body", "encode_json")),
    ("per-review log line", ("logging/", "webhook/serving/logs.py")),
    ("metrics", ("prometheus_client", "webhook/metrics.py")),
    ("JSON Patch", ("jsonpatch", "jsonpointer", "admission_review.py:make_patch")),
    ("admission decision", ("dracore/", "webhook/admission/decision.py")),
    ("Flask and werkzeug", ("flask/", "werkzeug/")),
    (
        "HTTP parsing and framing",
        ("h11/", "h2/", "hpack/", "hypercorn/", "httptools", "webhook/serving/http11"),
    ),
    ("bridge and thread hand-off", ("webhook/asgi.py", "concurrent/futures", "threading.py")),
    ("event loop", ("asyncio/", "uvloop", "selectors.py")),
)


def layer_of(stack: str) -> str:
    frames = stack.split(";")
    for frame in reversed(frames):
        for name, needles in LAYERS:
            if any(needle in frame for needle in needles):
                return name
    return "other"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=12)
    parser.add_argument("--gpus", type=int, default=1)
    parser.add_argument("--containers", type=int, default=1)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--raw", type=Path, help="also keep py-spy's collapsed stacks here")
    args = parser.parse_args()
    py_spy = Path(sys.executable).parent / "py-spy"
    if not py_spy.exists():
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "py-spy"], check=True)
    body = review_body(args.gpus, args.containers)
    os.sched_setaffinity(0, {1})
    work = Path(tempfile.mkdtemp(prefix="webhook-profile-"))
    raw = work / "stacks.txt"
    with BenchServer(["--threads", "4"], workers=1) as server:
        worker = pin(server)
        asyncio.run(drive(server, body, 2, args.connections))  # warm-up
        record = [
            str(py_spy), "record", "--pid", str(worker), "--gil", "--native", "--rate", "200",
            "--duration", str(args.seconds), "--format", "raw", "--output", str(raw),
        ]  # fmt: skip
        spy = subprocess.Popen(record, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        asyncio.run(drive(server, body, args.seconds + 1, args.connections))
        output = spy.communicate(timeout=60)[0].decode(errors="replace")
    if not raw.exists():
        raise SystemExit(f"py-spy recorded nothing:\n{output}")
    counts: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if count.isdigit():
            counts[layer_of(stack)] += int(count)
    if args.raw:
        shutil.copy(raw, args.raw)
    shutil.rmtree(work, ignore_errors=True)
    total = sum(counts.values())
    if not total:
        raise SystemExit("py-spy recorded no samples (is ptrace allowed here?)")
    print(f"{total} samples, {args.containers} container(s) x {args.gpus} GPU(s)\n")
    print("| layer | share |\n| --- | ---: |")
    for name, count in counts.most_common():
        print(f"| {name} | {count / total:.1%} |")


if __name__ == "__main__":
    main()
