"""hack.cluster itself: a second, throw-away control plane comes up and goes away cleanly."""

from __future__ import annotations

from pathlib import Path

import pytest

from hack import cluster as cluster_mod
from hack.components import COMPONENTS
from hack.procs import pid_alive, port_open

pytestmark = pytest.mark.e2e


def test_down_stops_only_its_own_processes_and_frees_every_port(tmp_path: Path) -> None:
    other = cluster_mod.Cluster(tmp_path / "other")
    other.up(fixtures=False)
    try:
        ports = list(other.state["ports"].values())
        pids = {name: other.read_pid(name) for name in COMPONENTS}
        assert all(port_open(p) for p in ports), ports
        assert other.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"
    finally:
        other.down(quiet=True)

    assert not any(port_open(p) for p in ports), ports
    assert not any(pid is not None and pid_alive(pid) for pid in pids.values()), pids
    assert not other.state, "state is cleared"
    assert not (tmp_path / "other" / "etcd-data").exists()
