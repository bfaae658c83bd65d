"""The real server for benchmarks: `dra-webhook serve --offline` on 127.0.0.1 with a fresh CA.

Used as a context manager; the port is read from the server's log, and leaving the block sends
SIGTERM (then SIGKILL after 30 s). RSS of the master and its workers is read from /proc.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

from tests.builders import container, make_pod, make_review
from webhook.ops import certs

ROOT = Path(__file__).resolve().parents[1]


def review_body(gpus_per_container: int = 1, containers: int = 1) -> bytes:
    """The AdmissionReview of a pod with `containers` containers of `gpus_per_container` GPUs."""
    pod = make_pod(
        *(
            container(f"app{i}", gpus=gpus_per_container, limits={"cpu": "4", "memory": "16Gi"})
            for i in range(containers)
        ),
        name=None,
    )
    return json.dumps(make_review(pod)).encode()


def process_tree(master: int) -> list[int]:
    """`master`'s pid, then its children's (gunicorn's workers)."""
    try:
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    except OSError:
        children = []
    return [master, *(int(pid) for pid in children)]


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class BenchServer:
    def __init__(self, serve_args: list[str] | None = None, *, workers: int = 2) -> None:
        self.work = Path(tempfile.mkdtemp(prefix="webhook-bench-"))
        self.workers = workers
        self.serve_args = list(serve_args or [])
        ca = certs.generate_ca()
        leaf = certs.issue_cert(ca, "bench", ip_addresses=["127.0.0.1"])
        certs.write_tls_dir(self.work / "tls", leaf=leaf, ca=ca)
        self.ca = ca
        self.cert_dir = self.work / "tls"
        self.client_context = ssl.create_default_context(cadata=ca.cert_pem.decode())
        self.log = self.work / "server.log"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def description(self) -> str:
        return f"dra-webhook serve --workers {self.workers} {' '.join(self.serve_args)}".strip()

    def request_bytes(self, body: bytes) -> bytes:
        return (
            b"POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )

    def __enter__(self) -> BenchServer:
        argv = [
            sys.executable, "-m", "webhook", "serve", "--offline", "--host=127.0.0.1",
            "--port=0", f"--cert-dir={self.cert_dir}", f"--workers={self.workers}",
            f"--metrics-dir={self.work / 'metrics'}", *self.serve_args,
        ]  # fmt: skip
        with self.log.open("wb") as sink:
            self.proc = subprocess.Popen(argv, stdout=sink, stderr=sink, cwd=ROOT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            text = self.log.read_text()
            match = re.search(r"Listening at: https://127\.0\.0\.1:(\d+)", text)
            if match and text.count("Booting worker") >= self.workers:
                time.sleep(1.0)
                self.port = int(match.group(1))
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.proc.kill()
        raise SystemExit(f"the server did not start:\n{self.log.read_text()}")

    def pids(self) -> list[int]:
        """The master's pid, then its workers'."""
        assert self.proc is not None
        return process_tree(self.proc.pid)

    def rss_mib(self) -> dict[str, float]:
        pids = self.pids()
        result = {f"master {pids[0]}": rss_kib(pids[0]) / 1024}
        result |= {f"worker {pid}": rss_kib(pid) / 1024 for pid in pids[1:]}
        return result

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.work, ignore_errors=True)
