"""The same POST /mutate through our server, uvicorn and granian: reviews/s, p50/p99, CPU.

    .venv/bin/pip install uvicorn granian   # for this benchmark only; not project dependencies
    .venv/bin/python -m bench.http_servers [--seconds 15] [--connections 16]

Each server runs one worker process over TLS on 127.0.0.1, pinned to CPU 0, the load to CPU 1:
`dra-webhook serve --offline --workers 1`, then `bench/asgi_endpoint.py` (the same Endpoints
as an ASGI app) under uvicorn (uvloop, httptools) and under granian (its Rust HTTP stack, the
asyncio ASGI interface). The client keeps `--connections` HTTPS keep-alive connections busy
in a closed loop with the review of a 1-GPU pod. Prints reviews/s, latency p50/p99 and the
server's CPU time per review (all its processes, from /proc), the figure least disturbed by
other load on the machine. A server that is not installed is reported and skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.bench_server import BenchServer, cpu_seconds, process_tree, review_body
from bench.soak import read_response

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def drive(
    port: int, context: object, request: bytes, seconds: float, connections: int
) -> list[float]:
    """Latencies of every review answered 200 in `seconds`, `connections` at a time."""
    end = time.perf_counter() + seconds
    latencies: list[float] = []

    async def client() -> None:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=context, server_hostname="127.0.0.1"
        )
        while time.perf_counter() < end:
            sent = time.perf_counter()
            writer.write(request)
            status, closing = await asyncio.wait_for(read_response(reader), 30)
            if status == 200:
                latencies.append(time.perf_counter() - sent)
            if closing:
                writer.close()
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", port, ssl=context, server_hostname="127.0.0.1"
                )
        writer.close()

    await asyncio.gather(*(client() for _ in range(connections)))
    return latencies


def wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited:\n{log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            time.sleep(1.0)
            return
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"the server did not listen:\n{log.read_text()}")


@contextmanager
def asgi_server(kind: str, tls: Path, work: Path) -> Iterator[tuple[int, int]]:
    """uvicorn or granian serving bench/asgi_endpoint.py; yields (port, pid)."""
    port = free_port()
    cert, key = str(tls / "tls.crt"), str(tls / "tls.key")
    if kind == "uvicorn":
        argv = [
            sys.executable, "-m", "uvicorn", "asgi_endpoint:app", "--app-dir", str(ROOT / "bench"),
            "--host", "127.0.0.1", f"--port={port}", "--ssl-certfile", cert, "--ssl-keyfile", key,
            "--loop", "uvloop", "--http", "httptools", "--workers", "1", "--no-access-log",
            "--log-level", "warning",
        ]  # fmt: skip
    else:
        argv = [
            sys.executable, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1",
            f"--port={port}", "--workers", "1", "--runtime-threads", "1", "--loop", "uvloop",
            "--http", "1", "--ssl-certificate", cert, "--ssl-keyfile", key,
            "--ssl-protocol-min", "tls1.2", "--no-access-log", "--log-level", "warning",
            "--working-dir", str(ROOT / "bench"), "asgi_endpoint:app",
        ]  # fmt: skip
    log = work / f"{kind}.log"
    metrics_dir = work / f"{kind}-metrics"
    metrics_dir.mkdir()
    env = os.environ | {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    with log.open("wb") as sink:
        proc = subprocess.Popen(argv, stdout=sink, stderr=sink, cwd=ROOT / "bench", env=env)
    try:
        wait_listening(port, proc, log)
        yield port, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def tree_cpu(pid: int) -> float:
    return sum(cpu_seconds(p) for p in process_tree(pid) if Path(f"/proc/{p}").exists())


def pin(pid: int) -> None:
    for member in process_tree(pid):
        subprocess.run(["taskset", "-acp", "0", str(member)], capture_output=True, check=False)


def measure(name: str, port: int, pid: int, context: object, args: argparse.Namespace) -> None:
    pin(pid)
    request = (
        b"POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(BODY)}\r\n\r\n".encode()
        + BODY
    )
    asyncio.run(drive(port, context, request, 2, args.connections))  # warm-up
    before = tree_cpu(pid)
    started = time.perf_counter()
    latencies = sorted(asyncio.run(drive(port, context, request, args.seconds, args.connections)))
    wall = time.perf_counter() - started
    cpu = tree_cpu(pid) - before
    if not latencies:
        print(f"{name:<34} no review answered")
        return
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(
        f"{name:<34}{len(latencies) / wall:>10,.0f}{statistics.median(latencies) * 1000:>9.2f}"
        f"{p99 * 1000:>9.2f}{cpu / len(latencies) * 1000:>10.3f}"
    )


BODY = review_body(1, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    os.sched_setaffinity(0, {1})
    print(
        f"load average {os.getloadavg()[0]:.1f}; servers on CPU 0, the load on CPU 1; "
        f"{args.connections} connections, {args.seconds:.0f} s each"
    )
    print(f"{'server':<34}{'reviews/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'CPU ms':>10}")
    with BenchServer(["--threads", "4"], workers=1) as ours:
        context = ours.client_context
        measure("dra-webhook (http11)", ours.port, ours.pids()[0], context, args)
        for kind in ("uvicorn", "granian"):
            if importlib.util.find_spec(kind) is None:
                print(f"{kind:<34} not installed (pip install {kind}): skipped")
                continue
            with asgi_server(kind, ours.cert_dir, ours.work) as (port, pid):
                measure(f"{kind} + asgi_endpoint", port, pid, context, args)


if __name__ == "__main__":
    main()
