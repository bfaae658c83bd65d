"""Soak: the real server over HTTPS for 60 s at 1,000 reviews/s while everything goes wrong.

    .venv/bin/python -m bench.soak [--seconds 60] [--rate 1000] [--connections 32]

During the run, on 127.0.0.1: the serving certificate is renewed every 10 s, the policy is
edited (a good edit, a bad edit that must be rejected, a good edit again), one worker is killed
with SIGKILL at half time (the arbiter replaces it), and 40 slow-loris connections are held open
the whole time (each trickles a header byte every 0.5 s; when the server cuts one off at its
header deadline, another takes its place).

The load is open loop: each of `--connections` keep-alive connections sends on a fixed
schedule, and a review's latency counts from when it was due, so a stall is not hidden by a
waiting client. A request whose connection was closed before any answer byte came back is
resent once on a new connection and counted as "resent": these are the connections the killed
worker held (a request it had read but not answered is among them, and an API server would not
resend that POST: the pod's creation fails under failurePolicy Fail, and its creator retries).
Anything else without a 200 is "failed". Prints requests sent, failed,
resent, p50/p99/max latency and RSS before and after. Every loop is bounded by the run time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import ssl
import statistics
import tempfile
import time
from pathlib import Path

from bench.bench_server import BenchServer, review_body
from tests.reviews import BAD_POLICY, POLICY
from webhook.ops import certs

ROOT = Path(__file__).resolve().parents[1]


class Stats:
    def __init__(self) -> None:
        self.sent = 0
        self.failed = 0
        self.resent = 0
        self.unsent = 0
        self.latencies: list[float] = []
        self.errors: dict[str, int] = {}

    def fail(self, reason: str) -> None:
        self.failed += 1
        self.errors[reason] = self.errors.get(reason, 0) + 1


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """The status of one response, and whether the server closes the connection after it (it
    does after 1,000 requests on one connection, so that clients spread over replicas)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length, closing = 0, False
    for line in head.split(b"\r\n"):
        lower = line.lower()
        if lower.startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
        elif lower.startswith(b"connection:") and b"close" in lower:
            closing = True
    await reader.readexactly(length)
    return status, closing


async def connection(
    server: BenchServer, request: bytes, stats: Stats, *, start: float, end: float, period: float
) -> None:
    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(
            "127.0.0.1", server.port, ssl=server.client_context, server_hostname="127.0.0.1"
        )

    reader, writer = await connect()
    due = start
    # A server (or machine) too slow for the rate leaves requests due; stop 15 s after the end
    # anyway and count what was never sent.
    while due < end and time.perf_counter() < end + 15:
        now = time.perf_counter()
        if due > now:
            await asyncio.sleep(due - now)
        stats.sent += 1
        for attempt in (1, 2):
            try:
                writer.write(request)
                status, closing = await asyncio.wait_for(read_response(reader), 10)
            except (OSError, asyncio.IncompleteReadError, ssl.SSLError) as exc:
                writer.close()
                reader, writer = await connect()
                if (
                    attempt == 1
                    and isinstance(exc, asyncio.IncompleteReadError)
                    and not exc.partial
                ):
                    stats.resent += 1
                    continue
                stats.fail(type(exc).__name__)
                break
            except TimeoutError:
                stats.fail("timeout")
                writer.close()
                reader, writer = await connect()
                break
            if status == 200:
                stats.latencies.append(time.perf_counter() - due)
            else:
                stats.fail(f"HTTP {status}")
            if closing:
                writer.close()
                reader, writer = await connect()
            break
        due += period
    while due < end:
        stats.unsent += 1
        due += period
    writer.close()


async def slow_loris(server: BenchServer, end: float) -> None:
    while time.perf_counter() < end:
        try:
            _, writer = await asyncio.open_connection(
                "127.0.0.1", server.port, ssl=server.client_context, server_hostname="127.0.0.1"
            )
            writer.write(b"POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            while time.perf_counter() < end and not writer.is_closing():
                writer.write(b"X")
                await writer.drain()
                await asyncio.sleep(0.5)
            writer.close()
        except (OSError, ssl.SSLError):
            await asyncio.sleep(0.5)


def publish(policy_dir: Path, text: str, generation: int) -> None:
    """Swap the policy in as the kubelet does: a new folder, then an atomic ..data symlink."""
    folder = policy_dir / f"..gen_{generation}"
    folder.mkdir()
    (folder / "policy.yaml").write_text(text)
    tmp = policy_dir / "..data_tmp"
    tmp.symlink_to(folder.name)
    tmp.replace(policy_dir / "..data")


async def chaos(server: BenchServer, policy_dir: Path, start: float, seconds: float) -> list[str]:
    events: list[str] = []
    current = certs.load_key_pair(server.cert_dir / "tls.crt", server.cert_dir / "tls.key").cert
    plan = sorted(
        [(t, "rotate") for t in range(10, int(seconds), 10)]
        + [(0.25 * seconds, "good"), (0.4 * seconds, "bad"), (0.65 * seconds, "good again")]
        + [(0.5 * seconds, "kill")]
    )
    generation = 1
    for at, what in plan:
        delay = start + at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if what == "rotate":
            leaf = certs.renew_cert(server.ca, current)
            certs.write_tls_dir(server.cert_dir, leaf=leaf, ca=server.ca)
            current = leaf.cert
        elif what == "kill":
            victim = server.pids()[1]
            os.kill(victim, signal.SIGKILL)
            what = f"kill worker {victim}"
        else:
            generation += 1
            text = BAD_POLICY if what == "bad" else POLICY.format(max=8 if what == "good" else 16)
            publish(policy_dir, text, generation)
            what = f"policy edit: {what}"
        events.append(f"{at:5.1f}s {what}")
    return events


async def run(server: BenchServer, policy_dir: Path, args: argparse.Namespace) -> Stats:
    stats = Stats()
    request = server.request_bytes(review_body()).replace(b"Connection: close\r\n", b"")
    start = time.perf_counter() + 2.0  # time to open the connections
    end = start + args.seconds
    period = args.connections / args.rate
    tasks = [
        connection(
            server,
            request,
            stats,
            start=start + i * period / args.connections,
            end=end,
            period=period,
        )
        for i in range(args.connections)
    ]
    tasks += [slow_loris(server, end) for _ in range(40)]
    results = await asyncio.gather(chaos(server, policy_dir, start, args.seconds), *tasks)
    for event in results[0]:
        print(event)
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    policy_dir = Path(tempfile.mkdtemp(prefix="webhook-soak-policy-"))
    publish(policy_dir, POLICY.format(max=4), 1)
    (policy_dir / "policy.yaml").symlink_to("..data/policy.yaml")
    serve_args = ["--policy", str(policy_dir / "policy.yaml"), "--reload-interval", "1"]
    with BenchServer(serve_args) as server:
        rss_before = sum(server.rss_mib().values())
        stats = asyncio.run(run(server, policy_dir, args))
        rss_after = sum(server.rss_mib().values())
        log = server.log.read_text()
    done = sorted(stats.latencies)
    print(f"\nserver: {server.description}; load average {os.getloadavg()[0]:.1f} at the end")
    print(
        f"requests sent {stats.sent} in {args.seconds:.0f} s ({stats.sent / args.seconds:.0f}/s); "
        f"due but never sent (the client fell behind) {stats.unsent}"
    )
    print(
        f"failed {stats.failed} {stats.errors or ''}; resent after a dead connection {stats.resent}"
    )
    if done:
        p99 = done[min(len(done) - 1, int(len(done) * 0.99))]
        print(
            f"latency p50 {statistics.median(done) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
            f"max {done[-1] * 1000:.1f} ms"
        )
    print(f"RSS master + workers: {rss_before:.1f} MiB before, {rss_after:.1f} MiB after")
    print(
        f"policy rejections logged {log.count('policy-reject')}, "
        f"certificate reloads logged {log.count('certificate-reload')}"
    )


if __name__ == "__main__":
    main()
