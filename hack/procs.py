"""Processes of a local cluster: the state directory's layout, pid files, ports, log tails.

Every process we start runs in its own session, logs to `logs/<name>.log` and is named by
`pids/<name>.pid`; stopping one checks that its command line still names our state directory,
so a recycled pid is never signalled.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

ROOT = Path(__file__).resolve().parents[1]


class ClusterError(RuntimeError):
    """Start-up or shutdown failed; the message carries the component's log tail."""


def state_dir() -> Path:
    return Path(os.environ.get("KUBECTL_DRA_CLUSTER_DIR") or ROOT / ".cluster")


def free_ports(n: int) -> list[int]:
    """`n` distinct free loopback ports (held open together so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_open(port: int) -> bool:
    """Whether something listens on `port`, on any address (the API server listens on
    node_net.HOST_ADDRESS, the other components on loopback)."""
    return listening(port=port)


def listening(*, address: str | None = None, port: int | None = None) -> bool:
    """Whether a TCP socket of this network namespace listens on `address` and/or `port`, read
    from /proc/net/tcp rather than by connecting: a connect to an address that is not local
    would follow the default route."""
    packed = ipaddress.IPv4Address(address).packed[::-1].hex().upper() if address else None
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return False
    for fields in (line.split() for line in lines):
        host, _, hex_port = fields[1].partition(":")
        if fields[3] != "0A":  # TCP_LISTEN
            continue
        if (packed is None or host == packed) and (port is None or int(hex_port, 16) == port):
            return True
    return False


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return f"(no log at {path})"
    return "\n".join(text[-lines:])


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (our own exited child not yet reaped) counts as dead.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def pid_cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, PermissionError):
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


@dataclass
class Paths:
    """Where a cluster keeps its files, under one state directory."""

    root: Path

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def pids(self) -> Path:
        return self.root / "pids"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd-data"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def pid(self, name: str) -> Path:
        return self.pids / f"{name}.pid"

    def webhook(self, name: str) -> Path:
        """The files of webhook instance `name` (certificates, registration, info.json)."""
        return self.root / "webhooks" / name


class Processes:
    """Start, find and stop the long-running processes named by pid files under `paths`."""

    def __init__(self, paths: Paths) -> None:
        self.paths = paths

    def read_pid(self, name: str) -> int | None:
        try:
            return int(self.paths.pid(name).read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def names(self) -> list[str]:
        """Every process with a pid file, sorted by name."""
        if not self.paths.pids.exists():
            return []
        return sorted(p.stem for p in self.paths.pids.glob("*.pid"))

    def spawn(self, name: str, argv: Sequence[str], *, env: dict[str, str] | None = None) -> int:
        """Start a long-running process in its own session, logging to logs/<name>.log."""
        self.paths.logs.mkdir(parents=True, exist_ok=True)
        self.paths.pids.mkdir(parents=True, exist_ok=True)
        with self.paths.log(name).open("ab") as log:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # survives `make cluster-up` returning; not hit by ^C
                env=env,
                cwd=self.paths.root,
            )
        self.paths.pid(name).write_text(f"{proc.pid}\n")
        return proc.pid

    def stop(self, name: str, *, quiet: bool, out: TextIO) -> None:
        pid = self.read_pid(name)
        pid_file = self.paths.pid(name)
        if pid is None:
            return
        # Never signal a recycled pid: every process we start names a file of our state dir.
        ours = pid_alive(pid) and str(self.paths.root) in " ".join(pid_cmdline(pid))
        if ours:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if pid_alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            if not quiet:
                print(f"stopped {name} (pid {pid})", file=out)
        pid_file.unlink(missing_ok=True)

    def wait_until(self, name: str, ready: Callable[[], bool], *, timeout: float) -> None:
        """Poll `ready` until it holds; fail early, with the log tail, if the process exits."""
        pid = self.read_pid(name)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pid is not None and not pid_alive(pid):
                tail = log_tail(self.paths.log(name))
                raise ClusterError(f"{name} exited during start-up; last log lines:\n{tail}")
            if ready():
                return
            time.sleep(0.2)
        tail = log_tail(self.paths.log(name))
        raise ClusterError(f"{name} not ready after {timeout:.0f}s; last log lines:\n{tail}")
