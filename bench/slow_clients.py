"""Slow clients and connection bursts against the real server over HTTPS, on 127.0.0.1.

    .venv/bin/python -m bench.slow_clients [--stalled 40] [--burst 32] [-- extra serve args]

Starts `dra-webhook serve --offline` with a fresh CA, then:

1. holds `--stalled` connections open in each of three phases: TCP connected but no TLS
   ClientHello (stalled handshake), TLS done but the request headers never finished, headers
   done but the body never finished; while they are held, a fresh client sends 20 reviews one
   after the other (a new connection each) and the latency of each is recorded;
2. opens `--burst` new TLS connections at once, each sending one review, and records when each
   answer arrived.

Prints the numbers as a table. Every client socket has a 5 s timeout, so a stalled server shows
as "timed out", never as a hung benchmark. Loopback only; every loop is bounded.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import threading
import time
from pathlib import Path

from bench.bench_server import BenchServer, review_body

ROOT = Path(__file__).resolve().parents[1]

CLIENT_TIMEOUT = 5.0


def one_review(server: BenchServer, body: bytes) -> float | None:
    """Seconds for one review on a new TLS connection, or None if it failed or timed out."""
    started = time.perf_counter()
    try:
        with (
            socket.create_connection(("127.0.0.1", server.port), timeout=CLIENT_TIMEOUT) as raw,
            server.client_context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            tls.sendall(server.request_bytes(body))
            response = b""
            while b"\r\n\r\n" not in response or not response.endswith(b"}"):
                chunk = tls.recv(65536)
                if not chunk:
                    break
                response += chunk
    except OSError:
        return None
    if not response.startswith(b"HTTP/1.1 200"):
        return None
    return time.perf_counter() - started


def hold(server: BenchServer, phase: str, count: int) -> list[socket.socket]:
    """`count` connections stalled in `phase`: handshake, headers or body."""
    held: list[socket.socket] = []
    for _ in range(count):
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=CLIENT_TIMEOUT)
        if phase == "handshake":
            raw.sendall(b"\x16\x03\x01")  # the first bytes of a ClientHello, then nothing
            held.append(raw)
            continue
        try:
            tls = server.client_context.wrap_socket(raw, server_hostname="127.0.0.1")
        except OSError:
            raw.close()
            continue
        if phase == "headers":
            tls.sendall(b"POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: app")
        else:
            tls.sendall(
                b"POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b'Content-Type: application/json\r\nContent-Length: 4000\r\n\r\n{"api'
            )
        held.append(tls)
    return held


def summary(latencies: list[float | None]) -> str:
    done = sorted(x for x in latencies if x is not None)
    failed = len(latencies) - len(done)
    if not done:
        return f"all {failed} failed or timed out"
    return (
        f"p50 {statistics.median(done) * 1000:.1f} ms, max {done[-1] * 1000:.1f} ms, "
        f"failed/timed out {failed} of {len(latencies)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stalled", type=int, default=40)
    parser.add_argument("--burst", type=int, default=32)
    parser.add_argument("--probes", type=int, default=20)
    parser.add_argument("serve_args", nargs="*", help="extra `dra-webhook serve` arguments")
    args = parser.parse_args()
    body = review_body()
    results: dict[str, str] = {}
    with BenchServer(args.serve_args) as server:
        results["idle"] = summary([one_review(server, body) for _ in range(args.probes)])
        for phase in ("handshake", "headers", "body"):
            held = hold(server, phase, args.stalled)
            try:
                results[f"{len(held)} stalled in {phase}"] = summary(
                    [one_review(server, body) for _ in range(args.probes)]
                )
            finally:
                for sock in held:
                    sock.close()
            time.sleep(1.0)
        latencies: list[float | None] = [None] * args.burst
        gate = threading.Barrier(args.burst)

        def burst_client(index: int) -> None:
            gate.wait()
            latencies[index] = one_review(server, body)

        threads = [threading.Thread(target=burst_client, args=(i,)) for i in range(args.burst)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(CLIENT_TIMEOUT + 5)
        results[f"burst of {args.burst} new TLS connections"] = summary(latencies)
        results["server"] = server.description
    width = max(len(k) for k in results)
    for key, value in results.items():
        print(f"{key:<{width}}  {value}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
