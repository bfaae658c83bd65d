"""One listening socket that outlives either container of the webhook's pod.

When the server's container is killed (SIGKILL, an OOM kill), its listening socket closes with
it, and until the kubelet marks the pod unready the API server keeps sending reviews there: each
gets "connection refused", and a POST is not retried, so the pod it was for is not created. The
pod's network namespace outlives its containers, and a socket lives as long as any process holds
a descriptor of it. So a tiny sidecar (`dra-webhook hold-listener`) holds the listening socket
and never accepts on it, and the server takes a copy of it at start instead of binding. While
the server is gone the kernel still completes handshakes and queues the connections; the
restarted server takes the same socket and answers them.

The copies travel over unix sockets in a folder only the pod's containers share (an emptyDir),
as SCM_RIGHTS messages:

- the sidecar answers on `<folder>/sidecar.sock` with its copy;
- the server answers on `<folder>/server.sock` with its copy, so that a restarted sidecar takes
  the socket back from the server instead of binding a second one. Only when nobody answers
  does the sidecar bind, and without SO_REUSEPORT the bind fails while any process still holds
  a listener on the port: there is never a second listening socket that nobody accepts on.

Both unix sockets are 0600 and each side checks that the peer runs as its own user. Every wait
here is bounded.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import signal
import socket
import stat
import struct
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Final, NoReturn

log = logging.getLogger(__name__)

SIDECAR_SOCKET: Final = "sidecar.sock"
SERVER_SOCKET: Final = "server.sock"
# Sent with the descriptor: a peer that is not one of ours (or another version) is told apart.
GREETING: Final = b"kubectl-dra listening socket v1"
# How long one exchange over a unix socket may take; the peer is local and answers at once.
EXCHANGE_TIMEOUT: Final = 2.0
# The server waits this long at start for the sidecar (which the kubelet starts first).
RECEIVE_TIMEOUT: Final = 15.0
# The sidecar tries this long to take the socket back or bind the port, then exits (restarted).
HOLD_TIMEOUT: Final = 30.0
RETRY_INTERVAL: Final = 0.1
BACKLOG: Final = 2048  # gunicorn's default: connections queued while no server accepts


class HandoffError(Exception):
    """A one-line reason the listening socket could not be handed over."""


def bind_listener(host: str, port: int) -> socket.socket:
    """A new TCP listening socket on host:port (SO_REUSEADDR, never SO_REUSEPORT)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=BACKLOG)


def ask(path: Path) -> socket.socket | None:
    """The listening socket the process answering at `path` holds; None if nobody answers."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(EXCHANGE_TIMEOUT)
        try:
            conn.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            return None  # no socket file, or a stale one its process left behind
        except OSError as exc:
            raise HandoffError(f"cannot connect to {path}: {exc}") from None
        _check_same_user(conn, path)
        try:
            message, fds, flags, _ = socket.recv_fds(conn, len(GREETING) + 1, 1)
        except OSError as exc:
            raise HandoffError(f"reading the listening socket from {path}: {exc}") from None
    if message != GREETING or len(fds) != 1 or flags & socket.MSG_CTRUNC:
        for fd in fds:
            os.close(fd)
        raise HandoffError(f"{path} answered something other than a listening socket")
    try:
        sock = socket.socket(fileno=fds[0])
    except OSError:
        os.close(fds[0])
        raise HandoffError(f"{path} handed over a descriptor that is not a socket") from None
    if (
        sock.type != socket.SOCK_STREAM
        or sock.family not in (socket.AF_INET, socket.AF_INET6)
        or not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    ):
        sock.close()
        raise HandoffError(f"{path} handed over a socket that is not a listening TCP socket")
    return sock


def receive(folder: Path, port: int, *, timeout: float = RECEIVE_TIMEOUT) -> socket.socket:
    """The listening socket of port `port` from the sidecar in `folder`, waiting up to `timeout`."""
    path = folder / SIDECAR_SOCKET
    deadline = time.monotonic() + timeout
    while (sock := ask(path)) is None:
        if time.monotonic() >= deadline:
            raise HandoffError(
                f"nobody handed over a listening socket at {path} within {timeout:g} s; run "
                f"`dra-webhook hold-listener --port {port} --handoff {folder}` next to the "
                "server (the chart's listener sidecar), or drop --listener-handoff"
            )
        time.sleep(RETRY_INTERVAL)
    bound = sock.getsockname()[1]
    if port and bound != port:  # port 0: whichever the sidecar got (tests)
        sock.close()
        raise HandoffError(
            f"the socket handed over at {path} listens on port {bound}, not --port {port}; "
            "give both containers the same port"
        )
    return sock


class Lender:
    """Answers every process connecting to `path` with a copy of `listener`, on a thread."""

    def __init__(self, listener: socket.socket, path: Path) -> None:
        self.listener = listener
        self.path = path
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # left by a killed predecessor; nobody answers on it any more
            self._server.bind(str(path))
            # Before listen(): until then a connect is refused, so nobody slips in before it.
            path.chmod(stat.S_IRUSR | stat.S_IWUSR)
            self._server.listen(8)
        except OSError as exc:
            self._server.close()
            raise HandoffError(f"cannot answer at {path}: {exc.strerror}") from None

    def serve_forever(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return  # closed
            with conn:
                conn.settimeout(EXCHANGE_TIMEOUT)
                try:
                    _check_same_user(conn, self.path)
                    socket.send_fds(conn, [GREETING], [self.listener.fileno()])
                except (OSError, HandoffError) as exc:
                    log.warning("did not hand over the listening socket at %s: %s", self.path, exc)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="listener-lender", daemon=True)
        thread.start()
        return thread

    def close_copy(self) -> None:
        """Drop this process's copy of the lending socket (a forked child that never lends)."""
        self._server.close()


def _check_same_user(conn: socket.socket, path: Path) -> None:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    if uid != os.getuid():
        raise HandoffError(f"the peer at {path} runs as uid {uid}, not as this process's")


def take_back_or_bind(folder: Path, host: str, port: int, *, timeout: float) -> socket.socket:
    """The server's copy of the listening socket if it answers, else a newly bound one.

    While the port is in use by a socket nobody hands over (a server still starting or
    stopping), try again until `timeout`; a second listener on the port is never made.
    """
    server = folder / SERVER_SOCKET
    deadline = time.monotonic() + timeout
    while True:
        sock = ask(server)
        if sock is not None:
            log.info("took the listening socket of port %s back from the server", port)
            return sock
        try:
            sock = bind_listener(host, port)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise HandoffError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
            if time.monotonic() >= deadline:
                raise HandoffError(
                    f"port {port} is in use, and nobody answers at {server} with its socket "
                    f"after {timeout:g} s; is another process listening on it?"
                ) from None
            time.sleep(RETRY_INTERVAL)
            continue
        log.info(
            "listening on %s:%s; the server takes it at %s", host, sock.getsockname()[1], folder
        )
        return sock


def hold(folder: Path, host: str, port: int, *, timeout: float = HOLD_TIMEOUT) -> NoReturn:
    """The sidecar: hold the listening socket of `port` and lend it; never accept on it."""
    # As a container's first process, Python would ignore SIGTERM (no default action for PID 1).
    signal.signal(signal.SIGTERM, _exit_on_signal)
    if not folder.is_dir():
        raise HandoffError(f"handoff folder {folder} does not exist (mount an emptyDir there)")
    listener = take_back_or_bind(folder, host, port, timeout=timeout)
    Lender(listener, folder / SIDECAR_SOCKET).serve_forever()
    raise HandoffError(f"stopped answering at {folder / SIDECAR_SOCKET}")


def _exit_on_signal(signum: int, _frame: FrameType | None) -> NoReturn:
    raise SystemExit(128 + signum)


def main(argv: list[str]) -> None:
    """`dra-webhook hold-listener`: parsed without click, so the sidecar stays a few MB."""
    parser = argparse.ArgumentParser(
        prog="dra-webhook hold-listener",
        description="Hold the webhook's listening socket for `dra-webhook serve "
        "--listener-handoff FOLDER` in the same pod, so that connections made while the server "
        "restarts wait for it instead of being refused. Never accepts a connection itself.",
    )
    parser.add_argument(
        "--handoff",
        type=Path,
        required=True,
        metavar="FOLDER",
        help="folder shared with the server (an emptyDir), for two unix sockets",
    )
    parser.add_argument(
        "--host", default="0.0.0.0", help="address to listen on (default %(default)s)"
    )
    parser.add_argument(
        "--port", type=int, default=9443, help="the server's --port (default %(default)s)"
    )
    parser.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], default="info"
    )
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port {args.port} is not a port (0-65535)")
    from webhook.serving import logs

    logs.configure(args.log_level)
    try:
        hold(args.handoff, args.host, args.port)
    except HandoffError as exc:
        parser.exit(1, f"dra-webhook hold-listener: {exc}\n")
