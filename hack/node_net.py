"""The pod network of the real nodes, kept off the host's own network.

Each real node runs its containerd, kubelet and kube-proxy inside a network namespace of its
own (`kdra-n<slot>`), joined to the host by one veth pair, like a machine on a private link:

    host: kdra0          10.243.0.1/32   the API server listens here (and advertises it)
          kdra-h<slot>   veth to the node; routes: 10.243.0.<10+slot>/32 and the node's pod
                         subnet 10.244.<slot>.0/24 through it, source 10.243.0.1
    node: uplink         10.243.0.<10+slot>/32; routes: 10.243.0.1 and 10.244.0.0/16 only
          cni0           the CNI bridge, gateway 10.244.<slot>.1 of the node's pods

Why it cannot send anything outward: the node namespace has no default route, so a pod's
packet to any address outside our ranges is refused there; the host holds `unreachable`
routes for the whole pod, Service and node ranges, so nothing addressed to them falls through
to the default route; kube-proxy's rules (and its masquerading) live in the node namespace,
whose only way out is the veth to the host. The host's firewall is not touched at all.

Slots are allocated host-wide (several clusters, several nodes each) under a lock in
RUN_DIR; a slot file names its owner (a node directory), so a slot whose owner is gone is
taken back, after removing what a crash left.
"""

from __future__ import annotations

import contextlib
import fcntl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hack.procs import listening

HOST_LINK = "kdra0"
HOST_ADDRESS = "10.243.0.1"
NODE_RANGE = "10.243.0.0/24"
POD_RANGE = "10.244.0.0/16"
SERVICE_RANGE = "10.96.0.0/16"
SAFETY_ROUTES = (POD_RANGE, SERVICE_RANGE, NODE_RANGE)
RUN_DIR = Path("/run/kubectl-dra/net")
NETNS_DIR = Path("/run/netns")
MAX_SLOTS = 64
UPLINK = "uplink"
BRIDGE = "cni0"


class NetError(RuntimeError):
    """An `ip` command failed; the message has its stderr."""


@dataclass(frozen=True)
class NodeNet:
    """The addresses and names of one node's network (pure)."""

    slot: int

    @property
    def netns(self) -> str:
        return f"kdra-n{self.slot}"

    @property
    def host_veth(self) -> str:
        return f"kdra-h{self.slot}"

    @property
    def address(self) -> str:
        return f"10.243.0.{10 + self.slot}"

    @property
    def pod_subnet(self) -> str:
        return f"10.244.{self.slot}.0/24"

    @property
    def gateway(self) -> str:
        return f"10.244.{self.slot}.1"

    def enter(self) -> list[str]:
        """An argv prefix that runs a program in the node's namespace (network only: the
        mounts, cgroups and pids stay the host's, which the kubelet needs)."""
        return ["nsenter", f"--net={NETNS_DIR / self.netns}", "--"]


def cni_conflist(net: NodeNet, ipam_dir: Path) -> dict[str, Any]:
    """bridge + host-local IPAM on the node's subnet. No ipMasq: nothing leaves our ranges.
    Hairpin lets a pod reach itself through a Service (kube-proxy masquerades that case)."""
    return {
        "cniVersion": "1.0.0",
        "name": "kubectl-dra",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(ipam_dir),
                    "ranges": [[{"subnet": net.pod_subnet, "gateway": net.gateway}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            }
        ],
    }


def kube_proxy_config(net: NodeNet, *, name: str, kubeconfig: Path) -> dict[str, Any]:
    """iptables mode in the node's namespace. Every knob that would write a host-wide sysctl
    (conntrack table size and timeouts, route_localnet) is off."""
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clusterCIDR": POD_RANGE,
        "hostnameOverride": name,
        "bindAddress": net.address,
        "healthzBindAddress": f"{net.address}:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        "nodePortAddresses": [f"{net.address}/32"],
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "iptables": {"localhostNodePorts": False, "masqueradeAll": False},
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
    }


# -- commands -------------------------------------------------------------------------------------


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise NetError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc


def _link_exists(name: str) -> bool:
    return _ip("link", "show", name, check=False).returncode == 0


def ensure_host() -> None:
    """The API server's address and the safety routes; idempotent.  The link is a bridge
    without ports: only a holder for a local address (some kernels lack the dummy driver)."""
    if not _link_exists(HOST_LINK):
        _ip("link", "add", HOST_LINK, "type", "bridge")
    _ip("addr", "replace", f"{HOST_ADDRESS}/32", "dev", HOST_LINK)
    _ip("link", "set", HOST_LINK, "up")
    for cidr in SAFETY_ROUTES:
        _ip("route", "replace", "unreachable", cidr)


def host_ready() -> bool:
    """HOST_ADDRESS is on its link: connecting to it stays on this host."""
    proc = _ip("-o", "addr", "show", "dev", HOST_LINK, check=False)
    return proc.returncode == 0 and f" {HOST_ADDRESS}/32 " in proc.stdout


def check_host() -> None:
    """Refuse to dial the API server while its address is not local (see host_ready)."""
    if not host_ready():
        raise NetError(
            f"{HOST_ADDRESS} is not on {HOST_LINK}: the control plane is not running "
            "(python -m hack.cluster up)"
        )


def release_host() -> bool:
    """Remove the host link and the safety routes once no API server listens on the address
    and no node namespace is left (another cluster may still use them). True if removed."""
    if listening(address=HOST_ADDRESS) or any(NETNS_DIR.glob("kdra-n*")):
        return False
    for cidr in SAFETY_ROUTES:
        _ip("route", "del", "unreachable", cidr, check=False)
    _ip("link", "del", HOST_LINK, check=False)
    if not any(RUN_DIR.glob("slot-*")):
        for leftover in (RUN_DIR / "lock", RUN_DIR, RUN_DIR.parent):
            with contextlib.suppress(OSError):
                leftover.unlink() if leftover.is_file() else leftover.rmdir()
    return True


@contextlib.contextmanager
def _slots_locked() -> Iterator[None]:
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    with (RUN_DIR / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def allocate(owner: Path) -> NodeNet:
    """A free slot, recorded as `owner`'s; a slot whose owner directory is gone is cleaned and
    reused."""
    with _slots_locked():
        for slot in range(MAX_SLOTS):
            net, record = NodeNet(slot), RUN_DIR / f"slot-{slot}"
            if record.exists():
                holder = Path(record.read_text().strip())
                # Ours from a crashed run, or an owner that is gone: clean it and take it.
                if holder != owner and holder.exists():
                    continue
                _remove(net)
            elif (NETNS_DIR / net.netns).exists():
                continue  # not ours to judge
            record.write_text(f"{owner}\n")
            return net
    raise NetError(f"all {MAX_SLOTS} node network slots are in use ({RUN_DIR})")


def create(net: NodeNet) -> None:
    """The namespace, the veth pair, addresses, routes and forwarding inside the node."""
    _remove(net)
    _ip("netns", "add", net.netns)
    _ip("link", "add", net.host_veth, "type", "veth", "peer", "name", UPLINK, "netns", net.netns)
    _ip("link", "set", net.host_veth, "up")
    src = ("src", HOST_ADDRESS)
    _ip("route", "replace", f"{net.address}/32", "dev", net.host_veth, *src)
    _ip("route", "replace", net.pod_subnet, "via", net.address, "dev", net.host_veth, *src)
    inside = ("-n", net.netns)
    _ip(*inside, "link", "set", "lo", "up")
    _ip(*inside, "addr", "add", f"{net.address}/32", "dev", UPLINK)
    _ip(*inside, "link", "set", UPLINK, "up")
    _ip(*inside, "route", "add", f"{HOST_ADDRESS}/32", "dev", UPLINK, "scope", "link")
    _ip(*inside, "route", "add", POD_RANGE, "via", HOST_ADDRESS, "dev", UPLINK, "onlink")
    # Per-namespace: the node routes between its bridge and the uplink; the host is unchanged.
    run_inside(net, ["sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"])


def run_inside(net: NodeNet, argv: list[str]) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [*net.enter(), *argv], capture_output=True, text=True, timeout=60, check=False
    )
    if proc.returncode != 0:
        raise NetError(f"{' '.join(argv)} in {net.netns}: {proc.stderr.strip()}")
    return proc


def _remove(net: NodeNet) -> None:
    """Deleting the namespace deletes its links, the veth's host end with them, and the
    routes through it. Safe when nothing exists."""
    _ip("netns", "del", net.netns, check=False)
    if _link_exists(net.host_veth):
        _ip("link", "del", net.host_veth, check=False)


def destroy(net: NodeNet) -> None:
    """Remove the node's network and give its slot back."""
    with _slots_locked():
        _remove(net)
        (RUN_DIR / f"slot-{net.slot}").unlink(missing_ok=True)
