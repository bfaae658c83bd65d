"""The real node's pod network (hack/node_net.py): contained, and gone after a crash.

Nothing here sends a packet outside our ranges: what could leave is checked with route lookups
(`ip route get` asks the kernel and sends nothing).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from ipaddress import ip_address, ip_network
from pathlib import Path

import pytest

from hack import node as node_mod
from hack import node_net
from hack.procs import pid_alive
from tests.e2e.e2e_support import E2ECluster

pytestmark = pytest.mark.e2e


def ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=False)


def host_firewall() -> str:
    """The host's iptables rules without comments and counters."""
    out = subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout
    return "\n".join(
        re.sub(r"\[\d+:\d+\]", "", line) for line in out.splitlines() if not line.startswith("#")
    )


def pod_with_own_address(k8s: E2ECluster, namespace: str, name: str) -> str:
    """A pod on the real node, without hostNetwork; its address once it runs."""
    (pod,) = node_mod.for_real_node(
        [
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"containers": [{"name": "c", "command": ["sleep", "3600"]}]},
            }
        ]
    )
    k8s.apply(json.dumps(pod), namespace=namespace)

    def address() -> str | None:
        status = k8s.get_pod(namespace, name)["status"]
        return status.get("podIP") if status.get("phase") == "Running" else None

    return k8s.wait_for(f"{name} running", address, timeout=90)


def assert_removed(node: node_mod.RealNode, net: node_net.NodeNet) -> None:
    assert not (node_net.NETNS_DIR / net.netns).exists()
    assert ip("link", "show", net.host_veth).returncode != 0
    routes = ip("route", "show").stdout
    assert net.pod_subnet not in routes and net.address not in routes, routes
    assert not (node_net.RUN_DIR / f"slot-{net.slot}").exists()
    assert not node.paths.root.exists()


def test_pods_are_contained_and_a_crashed_node_leaves_nothing(
    k8s: E2ECluster, namespace: str
) -> None:
    node = node_mod.RealNode(k8s.cluster)
    node.down(quiet=True)
    firewall_before = host_firewall()
    node.up()
    net = node.net
    try:
        assert ip_address(pod_with_own_address(k8s, namespace, "before")) in ip_network(
            net.pod_subnet
        )
        # Inside the node: no default route, so an address outside our ranges is refused there.
        outside = ip("-n", net.netns, "route", "get", "192.0.2.1")
        assert outside.returncode != 0 and "unreachable" in outside.stderr.lower(), outside
        # On the host: a pod or Service address that no node holds hits the safety routes.
        for stray in ("10.244.250.7", "10.96.250.7", "10.243.0.250"):
            assert ip("route", "get", stray).returncode != 0, stray
        # kube-proxy's rules are in the node's namespace only.
        assert "KUBE-SERVICES" in subprocess.run(
            ["ip", "netns", "exec", net.netns, "iptables-save"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        assert host_firewall() == firewall_before

        kill_node(k8s, node)  # a crash, with the pod's sandbox still up
        node.up()  # cleans what the crash left, then starts a working node again
        assert_removed_unless_reused(net, node.net)
        net = node.net
        assert ip_address(pod_with_own_address(k8s, namespace, "after")) in ip_network(
            net.pod_subnet
        )
        kill_node(k8s, node)
    finally:
        node.down(quiet=True)
    assert_removed(node, net)
    assert host_firewall() == firewall_before
    assert str(node.paths.root) not in Path("/proc/self/mountinfo").read_text()


def kill_node(k8s: E2ECluster, node: node_mod.RealNode) -> None:
    for name in node.processes:
        pid = k8s.cluster.read_pid(name)
        assert pid is not None and pid_alive(pid), name
        os.kill(pid, signal.SIGKILL)


def assert_removed_unless_reused(old: node_net.NodeNet, new: node_net.NodeNet) -> None:
    if old != new:
        assert not (node_net.NETNS_DIR / old.netns).exists()
        assert ip("link", "show", old.host_veth).returncode != 0
