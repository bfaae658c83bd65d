"""The listening socket held by `dra-webhook hold-listener` and served by `serve
--listener-handoff`: real processes, real descriptors passed over unix sockets, real SIGKILLs.

What a pod's two containers do is played by processes on 127.0.0.1 sharing a folder: killing the
server (master and workers at once, as the end of a container's PID namespace does) must cost no
refused connection, and killing the sidecar must not make a second listening socket.
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import json
import os
import re
import signal
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.builders import wait_for
from tests.reviews import gpu_review
from tests.tls.tls_support import REPO, Server, StartServer
from webhook.serving import handoff


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    out = tmp_path / "handoff"
    out.mkdir()
    return out


@dataclass
class Holder:
    proc: subprocess.Popen[bytes]
    log: Path


StartHolder = Callable[[], Holder]


@pytest.fixture
def start_holder(folder: Path, tmp_path: Path) -> Iterator[StartHolder]:
    holders: list[Holder] = []

    def start() -> Holder:
        log = tmp_path / f"holder-{len(holders)}.log"
        argv = [
            sys.executable, "-m", "webhook", "hold-listener",
            "--handoff", str(folder), "--host", "127.0.0.1", "--port", "0",
        ]  # fmt: skip
        with log.open("wb") as sink:
            holder = Holder(subprocess.Popen(argv, stdout=sink, stderr=sink, cwd=REPO), log)
        holders.append(holder)

        def holding() -> bool:
            if holder.proc.poll() is not None:
                raise AssertionError(f"holder exited {holder.proc.returncode}: {log.read_text()}")
            return bool(re.search("listening on|took the listening socket", log.read_text()))

        wait_for(holding, what="the holder to hold the socket")
        return holder

    yield start
    for holder in holders:
        if holder.proc.poll() is None:
            holder.proc.kill()
            holder.proc.wait(5)


def kill_server(server: Server) -> None:
    """SIGKILL the master and its workers at once, as when a container's first process dies."""
    workers = [
        int(p) for p in re.findall(r"Booting worker with pid: (\d+)", server.log.read_text())
    ]
    for pid in [server.proc.pid, *workers]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    server.proc.wait(5)


def socket_inode(sock: socket.socket) -> int:
    return os.fstat(sock.fileno()).st_ino


class Reviews:
    """Clients posting reviews on new connections until stopped; every outcome is counted."""

    def __init__(self, port: int, context: ssl.SSLContext, clients: int = 4) -> None:
        self.port, self.context = port, context
        self.outcomes: Counter[str] = Counter()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._client) for _ in range(clients)]

    def _client(self) -> None:
        while not self.stop.is_set():
            conn = http.client.HTTPSConnection(
                "127.0.0.1", self.port, context=self.context, timeout=20
            )
            try:
                conn.request(
                    "POST",
                    "/mutate",
                    body=json.dumps(gpu_review()),
                    headers={"Content-Type": "application/json"},
                )
                resp = conn.getresponse()
                resp.read()
                self.outcomes[f"HTTP {resp.status}"] += 1
            except OSError as exc:
                self.outcomes[type(exc).__name__] += 1
            finally:
                conn.close()

    def __enter__(self) -> Reviews:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)


def test_a_killed_server_costs_no_refused_connection(
    start_server: StartServer, start_holder: StartHolder, folder: Path
) -> None:
    start_holder()
    first = start_server("--listener-handoff", str(folder))
    with Reviews(first.port, first.context) as reviews:
        wait_for(lambda: reviews.outcomes["HTTP 200"] > 20, what=f"reviews: {reviews.outcomes}")
        kill_server(first)
        killed_at = sum(reviews.outcomes.values())
        time.sleep(1)  # connections queue in the held socket meanwhile
        second = start_server("--listener-handoff", str(folder))
        assert second.port == first.port
        wait_for(
            lambda: reviews.outcomes["HTTP 200"] > killed_at + 20, what="reviews after restart"
        )
    # A review in flight on a killed worker can be cut; a new connection is never refused.
    assert reviews.outcomes["ConnectionRefusedError"] == 0, reviews.outcomes
    cut = sum(n for outcome, n in reviews.outcomes.items() if outcome != "HTTP 200")
    assert cut <= len(reviews.threads), reviews.outcomes


def test_a_restarted_sidecar_takes_the_servers_socket_back(
    start_server: StartServer, start_holder: StartHolder, folder: Path
) -> None:
    holder = start_holder()
    server = start_server("--listener-handoff", str(folder))
    before = handoff.ask(folder / handoff.SIDECAR_SOCKET)
    assert before is not None
    holder.proc.kill()
    holder.proc.wait(5)
    again = start_holder()
    assert "took the listening socket" in again.log.read_text()
    after = handoff.ask(folder / handoff.SIDECAR_SOCKET)
    assert after is not None
    assert socket_inode(after) == socket_inode(before)  # one socket, not a second listener
    # Now the server dies too: the new sidecar's copy keeps the port listening, and a
    # connection made meanwhile is answered by the next server.
    kill_server(server)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as queued:
        nxt = start_server("--listener-handoff", str(folder))
        assert nxt.port == server.port
        request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        with nxt.context.wrap_socket(queued, server_hostname="127.0.0.1") as tls:
            tls.sendall(request)
            assert tls.recv(64).startswith(b"HTTP/1.1 200")
    for sock in (before, after):
        sock.close()


def test_the_sidecar_never_accepts_and_exits_on_sigterm(
    start_holder: StartHolder, folder: Path
) -> None:
    holder = start_holder()
    listener = handoff.ask(folder / handoff.SIDECAR_SOCKET)
    assert listener is not None
    port = listener.getsockname()[1]
    # Queued, not accepted: the connection is still in the backlog for us to accept.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        listener.settimeout(5)
        accepted, _ = listener.accept()
        accepted.sendall(b"ours")
        assert client.recv(4) == b"ours"
        accepted.close()
    assert stat.S_IMODE((folder / handoff.SIDECAR_SOCKET).stat().st_mode) == 0o600
    holder.proc.send_signal(signal.SIGTERM)  # a container's first process must not ignore it
    assert holder.proc.wait(5) == 128 + signal.SIGTERM
    listener.close()


def test_with_nobody_answering_the_server_stops_with_a_clear_error(folder: Path) -> None:
    (folder / handoff.SIDECAR_SOCKET).touch()  # a stale file is no answer either
    started = time.monotonic()
    with pytest.raises(handoff.HandoffError) as failed:
        handoff.receive(folder, 9443, timeout=0.5)
    assert time.monotonic() - started < 3
    assert str(failed.value) == (
        f"nobody handed over a listening socket at {folder / handoff.SIDECAR_SOCKET} within "
        f"0.5 s; run `dra-webhook hold-listener --port 9443 --handoff {folder}` next to the "
        "server (the chart's listener sidecar), or drop --listener-handoff"
    )


def test_a_port_held_by_a_socket_nobody_lends_is_never_bound_twice(folder: Path) -> None:
    held = handoff.bind_listener("127.0.0.1", 0)
    port = held.getsockname()[1]
    with pytest.raises(handoff.HandoffError, match=f"port {port} is in use"):
        handoff.take_back_or_bind(folder, "127.0.0.1", port, timeout=0.3)
    with pytest.raises(OSError) as second:
        handoff.bind_listener("127.0.0.1", port)
    assert second.value.errno == errno.EADDRINUSE
    held.close()


def test_a_peer_answering_something_else_is_refused(folder: Path) -> None:
    path = folder / handoff.SIDECAR_SOCKET
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as fake:
        fake.bind(str(path))
        fake.listen(1)

        def answer_with_a_pipe() -> None:
            conn, _ = fake.accept()
            read, write = os.pipe()
            with conn:
                socket.send_fds(conn, [handoff.GREETING], [read])
            os.close(read)
            os.close(write)

        thread = threading.Thread(target=answer_with_a_pipe)
        thread.start()
        with pytest.raises(handoff.HandoffError, match="not a socket"):
            handoff.ask(path)
        thread.join(5)


def test_the_server_lends_the_socket_only_from_a_mode_0600_socket(
    start_server: StartServer, start_holder: StartHolder, folder: Path
) -> None:
    start_holder()
    start_server("--listener-handoff", str(folder))
    assert stat.S_IMODE((folder / handoff.SERVER_SOCKET).stat().st_mode) == 0o600
    lent = handoff.ask(folder / handoff.SERVER_SOCKET)
    held = handoff.ask(folder / handoff.SIDECAR_SOCKET)
    assert lent is not None and held is not None
    assert socket_inode(lent) == socket_inode(held)
    lent.close()
    held.close()


def test_the_sidecar_without_its_folder_stops_with_one_line(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "webhook", "hold-listener", "--handoff", str(tmp_path / "no")]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd=REPO, check=False)
    assert (proc.returncode, proc.stderr) == (
        1,
        f"dra-webhook hold-listener: handoff folder {tmp_path / 'no'} does not exist "
        "(mount an emptyDir there)\n",
    )
