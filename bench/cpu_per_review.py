"""CPU per review of the real server: one worker pinned to core 0, the load on core 1.

    .venv/bin/python -m bench.cpu_per_review [--seconds 10] [--connections 16]

Starts `dra-webhook serve --offline --workers 1 --threads 4`, pins the master and the worker (all
threads) to CPU 0 and this process to CPU 1, then drives POST /mutate over HTTPS keep-alive in a
closed loop, for the review of a 1-GPU pod and of a pod with 4 containers x 2 GPUs. Prints
reviews/s and the worker's CPU time per review (utime + stime from /proc), the figure that does
not depend on how busy the rest of the machine is. Loopback only; each run is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import time
from pathlib import Path

from bench.bench_server import BenchServer, cpu_seconds, review_body
from bench.soak import read_response

ROOT = Path(__file__).resolve().parents[1]


async def drive(server: BenchServer, body: bytes, seconds: float, connections: int) -> int:
    request = server.request_bytes(body).replace(b"Connection: close\r\n", b"")
    end = time.perf_counter() + seconds
    done = 0

    async def client() -> None:
        nonlocal done

        async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            return await asyncio.open_connection(
                "127.0.0.1", server.port, ssl=server.client_context, server_hostname="127.0.0.1"
            )

        reader, writer = await connect()
        while time.perf_counter() < end:
            writer.write(request)
            status, closing = await asyncio.wait_for(read_response(reader), 30)
            done += status == 200
            if closing:
                writer.close()
                reader, writer = await connect()
        writer.close()

    await asyncio.gather(*(client() for _ in range(connections)))
    return done


def pin(server: BenchServer) -> int:
    """Pin the server (master and worker, every thread) to CPU 0; returns the worker's pid."""
    pids = server.pids()
    for pid in pids:
        subprocess.run(["taskset", "-acp", "0", str(pid)], capture_output=True, check=False)
    return pids[1]


SHAPES = (("1-GPU pod", (1, 1)), ("4 x 2-GPU pod", (2, 4)))


def measure(seconds: float, connections: int) -> dict[str, dict[str, float]]:
    """Per pod shape: reviews/s and the worker's CPU ms per review; plus the RSS (MiB)."""
    os.sched_setaffinity(0, {1})
    results: dict[str, dict[str, float]] = {}
    with BenchServer(["--threads", "4"], workers=1) as server:
        worker = pin(server)
        for label, (gpus, containers) in SHAPES:
            body = review_body(gpus, containers)
            asyncio.run(drive(server, body, 2, connections))  # warm-up
            before = cpu_seconds(worker)
            started = time.perf_counter()
            count = asyncio.run(drive(server, body, seconds, connections))
            wall = time.perf_counter() - started
            cpu = cpu_seconds(worker) - before
            results[label] = {
                "reviews_per_s": count / wall,
                "cpu_ms": cpu / count * 1000,
                "per_core": count / cpu,
                "reviews": count,
            }
        results["rss_mib"] = server.rss_mib()
    os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f}; the worker on CPU 0, the load on CPU 1")
    results = measure(args.seconds, args.connections)
    for label, _shape in SHAPES:
        r = results[label]
        print(
            f"{label}: {r['reviews_per_s']:,.0f} reviews/s, worker CPU {r['cpu_ms']:.2f} ms per "
            f"review, {r['per_core']:,.0f} reviews per CPU-second ({r['reviews']:.0f} reviews)"
        )
    print(f"RSS MiB: {results['rss_mib']}")


if __name__ == "__main__":
    main()
