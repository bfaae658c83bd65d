"""One real node for the local control plane: containerd, runc, a kubelet and a DRA plugin.

    python -m hack.cluster node-up     # (after `up`) build (cached) and start the node
    python -m hack.cluster node-down   # stop it and remove everything it left behind

The simulated nodes (fakegpu.py) stay; this is one more node, named after the host.  It is
labelled REAL_NODE_LABEL; pods meant to run are pinned to it.  Why each choice:
- containerd v2 with `restrict_oom_score_adj` (the VM lacks CAP_SYS_RESOURCE, so runc cannot
  lower a sandbox's oom_score_adj), the `overlayfs` snapshotter (what
  nodes use; `native` copied the whole image at every container start, seconds per restart),
  CDI on, and every root/state/socket/CDI path under `<cluster dir>/node/`.
- a network namespace per node (node_net.py): containerd, the kubelet and kube-proxy run in
  it, so pods get their own addresses on a bridge there (CNI bridge + host-local), Services
  work (kube-proxy in iptables mode, its rules in that namespace), and the host's firewall and
  routes stay as they were but for one veth, its two routes and the safety routes.
- cgroupfs under a cgroup root of our own (`/kubectl-dra-<hash of the cluster dir>`), so a
  dev and an e2e node can run side by side and teardown removes exactly ours.
- kubelet authn/authz as upstream defaults them: x509 client certs from our CA plus webhook
  token review and SubjectAccessReview through the API server; no anonymous access.  The API
  server presents its own kubelet client certificate, bound to `system:kubelet-api-admin`.
- the DRA plugin uses the kubelet's node credentials: the Node authorizer lets a node publish
  its own ResourceSlices and read the claims of its pods, and nothing more.

Longer than 500 lines because teardown is most of it: everything a crashed run can leave behind
(mounts, cgroups, shim sockets, log links, containers) is found and removed here, in one place.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import yaml

from hack import image, node_build, node_net
from hack.controlplane import ControlPlane
from hack.pki import APISERVER_KUBELET_USER
from hack.procs import free_ports, pid_alive, pid_cmdline
from webhook.ops import certs

REAL_NODE_LABEL = "kubectl-dra.io/real-node"
PROCESSES = ("containerd", "kubelet", "kube-proxy", "dra-plugin")
CGROUP_MOUNTS = Path("/sys/fs/cgroup")
# The snapshotter of real nodes: a container (re)start mounts layers instead of copying them.
SNAPSHOTTER = "overlayfs"
SHIM_SOCKETS = Path("/run/containerd/s")
UNIX_PATH_MAX = 107
KUBE_PROXY_USER = "system:kube-proxy"  # bound to system:node-proxier by the bootstrap policy


class NodeError(RuntimeError):
    """The node did not come up or go down; the message has the component's log tail."""


def node_name() -> str:
    """The host name (the API server dials the kubelet by its InternalIP, not by name)."""
    return socket.gethostname().lower()


class NodePaths:
    def __init__(self, cluster_root: Path, index: int = 0) -> None:
        suffix = f"-{index}" if index else ""
        self.root = cluster_root / f"node{suffix}"
        tag = hashlib.sha256(f"{cluster_root.resolve()}{suffix}".encode()).hexdigest()[:8]
        self.cgroup_root = f"/kubectl-dra-{tag}"
        self.containerd = self.root / "containerd"  # root/, state/, config.toml
        self.kubelet = self.root / "kubelet"  # the kubelet's --root-dir
        self.cdi = self.root / "cdi"  # CDI specs the plugin writes and containerd reads
        self.cni = self.root / "cni"
        self.ipam = self.root / "ipam"  # host-local's leases (not /var/lib/cni)
        self.kube_proxy = self.root / "kube-proxy"
        self.pki = self.root / "pki"
        self.run = self.root / "run"
        self.runc = self.root / "runc"  # runc's state root (--root)
        self.pod_logs = self.root / "pod-logs"

    @property
    def all_dirs(self) -> list[Path]:
        return [
            self.root,
            self.containerd,
            self.kubelet,
            self.cdi,
            self.cni,
            self.ipam,
            self.kube_proxy,
            self.pki,
            self.run,
            self.runc,
            self.pod_logs,
        ]

    @property
    def containerd_sock(self) -> Path:
        return self.root / "run" / "containerd.sock"

    @property
    def registry_sock(self) -> Path:
        return self.root / "kubelet" / "plugins_registry" / "gpu.example.com-reg.sock"

    def check_socket_paths(self) -> None:
        for sock in (self.containerd_sock.with_suffix(".sock.ttrpc"), self.registry_sock):
            if len(str(sock)) > UNIX_PATH_MAX:
                raise NodeError(
                    f"{sock} is longer than a unix socket path may be ({UNIX_PATH_MAX} bytes): "
                    "use a shorter KUBECTL_DRA_CLUSTER_DIR"
                )


# -- configuration files (pure) -------------------------------------------------------------------


def containerd_config(p: NodePaths, art: node_build.NodeArtifacts) -> str:
    runtime = "plugins.'io.containerd.cri.v1.runtime'"
    return f"""version = 3
root = '{p.containerd}/root'
state = '{p.containerd}/state'
imports = []
# Not needed here, and each would look at a host path of its own.
disabled_plugins = ['io.containerd.nri.v1.nri', 'io.containerd.snapshotter.v1.btrfs',
  'io.containerd.snapshotter.v1.zfs', 'io.containerd.snapshotter.v1.devmapper',
  'io.containerd.snapshotter.v1.blockfile', 'io.containerd.snapshotter.v1.erofs',
  'io.containerd.image-verifier.v1.bindir', 'io.containerd.tracing.processor.v1.otlp',
  'io.containerd.internal.v1.tracing']

[grpc]
  address = '{p.containerd_sock}'
[ttrpc]
  address = '{p.containerd_sock}.ttrpc'
[debug]
  address = ''
[metrics]
  address = ''

[plugins.'io.containerd.internal.v1.opt']
  path = '{p.containerd}/opt'
[plugins.'io.containerd.grpc.v1.cri']
  disable_tcp_service = true
  stream_server_address = '127.0.0.1'
  stream_server_port = '0'
[plugins.'io.containerd.cri.v1.images']
  snapshotter = '{SNAPSHOTTER}'
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = '{art.pause_image}'
[{runtime}]
  cdi_spec_dirs = ['{p.cdi}']
  restrict_oom_score_adj = true
  # Pod namespaces under our state dir: teardown unmounts them with the rest.
  netns_mounts_under_state_dir = true
  [{runtime}.cni]
    bin_dirs = ['{art.cni_bin_dir}']
    conf_dir = '{p.cni}'
  [{runtime}.containerd]
    default_runtime_name = 'runc'
    [{runtime}.containerd.runtimes.runc]
      runtime_type = 'io.containerd.runc.v2'
      snapshotter = '{SNAPSHOTTER}'
      [{runtime}.containerd.runtimes.runc.options]
        BinaryName = '{art.runc}'
        Root = '{p.runc}'
        SystemdCgroup = false
"""


def kubelet_config(
    p: NodePaths, *, address: str, port: int, healthz_port: int, ca: Path, cert: Path, key: Path
) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": address,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": address,
        "healthzPort": healthz_port,
        "tlsCertFile": str(cert),
        "tlsPrivateKeyFile": str(key),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(ca)},
        },
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": f"unix://{p.containerd_sock}",
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": p.cgroup_root,
        "failCgroupV1": False,
        "failSwapOn": False,
        "podLogsDir": str(p.pod_logs),
        "makeIPTablesUtilChains": False,
        "resolvConf": "",
        # Our images exist only in this containerd: never garbage-collect them.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False,
        "maxPods": 30,
        "shutdownGracePeriod": "0s",
    }


# -- node lifecycle ------------------------------------------------------------------------------


class RealNode:
    """Real node `index` of a cluster: 0 is named after the host, the others `<host>-<index>`;
    each has its own directory, processes, cgroup root and network slot."""

    def __init__(self, cluster: ControlPlane, index: int = 0) -> None:
        self.cluster = cluster
        self.index = index
        self.paths = NodePaths(cluster.paths.root, index)

    @classmethod
    def existing(cls, cluster: ControlPlane) -> list[RealNode]:
        """Every node that has a directory in the cluster's, started or crashed."""
        found = [cls(cluster)]
        for d in sorted(cluster.paths.root.glob("node-*")):
            if d.is_dir() and d.name.removeprefix("node-").isdigit():
                found.append(cls(cluster, int(d.name.removeprefix("node-"))))
        return found

    def process(self, part: str) -> str:
        """The pid-file name of one of PROCESSES on this node."""
        return f"node-{part}" if self.index == 0 else f"node{self.index}-{part}"

    @property
    def processes(self) -> list[str]:
        return [self.process(part) for part in PROCESSES]

    @property
    def name(self) -> str:
        return node_name() if self.index == 0 else f"{node_name()}-{self.index}"

    @property
    def state_file(self) -> Path:
        return self.paths.root / "node.json"

    def info(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.state_file.read_text()))
        except FileNotFoundError:
            return {}

    def is_running(self) -> bool:
        pids = [self.cluster.read_pid(n) for n in self.processes]
        return bool(self.info()) and all(pid is not None and pid_alive(pid) for pid in pids)

    def up(self, *, out: TextIO = sys.stderr) -> str:
        """Start the node (after cleaning what a crashed run left); return its name."""
        if self.is_running():
            print(f"real node {self.info()['name']} already running", file=out)
            return str(self.info()["name"])
        if not self.cluster.is_running():
            raise NodeError(f"no control plane runs in {self.cluster.paths.root}: start it first")
        self.down(quiet=True)
        name = self.name
        p = self.paths
        p.check_socket_paths()
        art = node_build.build(self.cluster.state.get("version"), out_stream=out)
        t0 = time.monotonic()
        for d in p.all_dirs:
            d.mkdir(parents=True, exist_ok=True)
        net = node_net.allocate(p.root)
        # Recorded before anything exists, so that `down` after a crash finds all of it.
        self.state_file.write_text(json.dumps({"name": name, "slot": net.slot}) + "\n")
        try:
            node_net.create(net)
            self._start_containerd(art, net)
            self._import_images(art)
            self._create_cgroup_root()
            self._start_kubelet(art, name, net)
            self._wait_node_ready(name)
            self._start_kube_proxy(art, name, net)
            self._start_plugin(art, name)
            self._wait_slice(name)
        except BaseException:
            self.down(quiet=True)
            raise
        print(f"real node {name} up in {time.monotonic() - t0:.0f}s", file=out)
        return name

    @property
    def net(self) -> node_net.NodeNet:
        slot = self.info().get("slot")
        if not isinstance(slot, int):
            raise NodeError(f"no real node in {self.paths.root}")
        return node_net.NodeNet(slot)

    def _start_containerd(self, art: node_build.NodeArtifacts, net: node_net.NodeNet) -> None:
        p = self.paths
        (p.containerd / "config.toml").write_text(containerd_config(p, art))
        conflist = node_net.cni_conflist(net, p.ipam)
        (p.cni / "10-kubectl-dra.conflist").write_text(json.dumps(conflist, indent=2) + "\n")
        env = {**os.environ, "PATH": f"{art.shim_dir}:{os.environ.get('PATH', '')}"}
        self.cluster.spawn(
            self.process("containerd"),
            [*net.enter(), str(art.containerd), f"--config={p.containerd / 'config.toml'}"],
            env=env,
        )
        self.cluster.wait_ready(
            self.process("containerd"),
            timeout=60,
            probe=lambda: self._ctr("version", check=False) == 0,
        )

    def _ctr(self, *args: str, check: bool = True) -> int:
        art_ctr = node_build.build_containerd() / "ctr"
        proc = subprocess.run(
            [str(art_ctr), f"--address={self.paths.containerd_sock}", "-n", "k8s.io", *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and proc.returncode != 0:
            raise NodeError(f"ctr {' '.join(args)}: {proc.stderr.strip()}")
        return proc.returncode

    def _import_images(self, art: node_build.NodeArtifacts) -> None:
        for archive in (art.pause_archive, art.busybox_archive):
            ref = node_build.image_ref(archive)
            self._ctr(
                "images",
                "import",
                f"--snapshotter={SNAPSHOTTER}",
                "--local",
                f"--base-name={ref.rsplit(':', 1)[0]}",
                str(archive),
            )

    def import_image(self, webhook_image: image.WebhookImage) -> None:
        """Make an image archive available to pods, as a registry pull would (pullPolicy
        Never or IfNotPresent)."""
        ctr = node_build.build_containerd() / "ctr"
        image.import_into(webhook_image, ctr, self.paths.containerd_sock, snapshotter=SNAPSHOTTER)

    def _cgroup_dirs(self) -> list[Path]:
        if not CGROUP_MOUNTS.is_dir():
            return []
        rel = self.paths.cgroup_root.lstrip("/")
        return [
            h / rel
            for h in sorted(CGROUP_MOUNTS.iterdir())
            if h.is_dir() and not h.is_symlink() and (h / "cgroup.procs").exists()
        ]

    def _create_cgroup_root(self) -> None:
        """The kubelet requires its cgroup root to exist in every hierarchy."""
        for d in self._cgroup_dirs():
            d.mkdir(exist_ok=True)
            # A new cpuset cgroup starts with no CPUs or memory nodes; inherit the parent's.
            for knob in ("cpuset.cpus", "cpuset.mems"):
                if (d / knob).exists() and not (d / knob).read_text().strip():
                    (d / knob).write_text((d.parent / knob).read_text())

    def _start_kubelet(
        self, art: node_build.NodeArtifacts, name: str, net: node_net.NodeNet
    ) -> None:
        cl, p = self.cluster, self.paths
        pki = cl.paths.pki
        ca = certs.load_key_pair(pki / "ca.crt", pki / "ca.key")
        # The API server dials the kubelet on its InternalIP, the node's own address.
        serving = certs.issue_cert(ca, name, dns_names=[name], ip_addresses=[net.address])
        certs.write_public(p.pki / "kubelet.crt", serving.cert_pem)
        certs.write_private(p.pki / "kubelet.key", serving.key_pem)
        kubeconfig = cl.issue_client_kubeconfig(
            p.root / "kubelet.kubeconfig", user=f"system:node:{name}", groups=["system:nodes"]
        )
        cl.kubectl("apply", "-f", "-", input=yaml.safe_dump(apiserver_kubelet_rbac()))
        port, healthz = free_ports(2)
        config = kubelet_config(
            p,
            address=net.address,
            port=port,
            healthz_port=healthz,
            ca=pki / "ca.crt",
            cert=p.pki / "kubelet.crt",
            key=p.pki / "kubelet.key",
        )
        (p.kubelet / "config.yaml").write_text(yaml.safe_dump(config))
        info = {**self.info(), "kubeletPort": port, "healthzPort": healthz}
        self.state_file.write_text(json.dumps(info) + "\n")
        argv = [
            *net.enter(),
            str(art.kubelet),
            f"--config={p.kubelet / 'config.yaml'}",
            f"--kubeconfig={kubeconfig}",
            f"--root-dir={p.kubelet}",
            f"--cert-dir={p.pki}",
            f"--hostname-override={name}",
            f"--node-ip={net.address}",
            f"--node-labels={REAL_NODE_LABEL}=true",
            "--v=2",
        ]
        cl.spawn(self.process("kubelet"), argv)
        cl.wait_ready(
            self.process("kubelet"),
            timeout=60,
            probe=lambda: _http_ok(f"http://{net.address}:{healthz}/healthz"),
        )

    def _start_kube_proxy(
        self, art: node_build.NodeArtifacts, name: str, net: node_net.NodeNet
    ) -> None:
        p = self.paths
        kubeconfig = self.cluster.issue_client_kubeconfig(
            p.kube_proxy / "kubeconfig", user=KUBE_PROXY_USER
        )
        config = node_net.kube_proxy_config(net, name=name, kubeconfig=kubeconfig)
        (p.kube_proxy / "config.yaml").write_text(yaml.safe_dump(config))
        argv = [*net.enter(), str(art.kube_proxy), f"--config={p.kube_proxy / 'config.yaml'}"]
        self.cluster.spawn(self.process("kube-proxy"), [*argv, "--v=2"])
        self.cluster.wait_ready(
            self.process("kube-proxy"),
            timeout=60,
            probe=lambda: _http_ok(f"http://{net.address}:10256/healthz"),
        )

    def _node(self, name: str) -> dict[str, Any] | None:
        proc = self.cluster.kubectl("get", "node", name, "-o", "json", check=False)
        return json.loads(proc.stdout) if proc.returncode == 0 else None

    def _wait_node_ready(self, name: str) -> None:
        def ready() -> bool:
            node = self._node(name)
            conds = (node or {}).get("status", {}).get("conditions") or []
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)

        self.cluster.wait_ready(self.process("kubelet"), timeout=90, probe=ready)
        # The node lifecycle controller, which would lift the registration taint, is off.
        self.cluster.kubectl(
            "taint", "node", name, "node.kubernetes.io/not-ready:NoSchedule-", check=False
        )

    def _start_plugin(self, art: node_build.NodeArtifacts, name: str) -> None:
        p = self.paths
        argv = [
            str(art.plugin),
            f"--node-name={name}",
            f"--kubeconfig={p.root / 'kubelet.kubeconfig'}",
            f"--registrar-dir={p.kubelet / 'plugins_registry'}",
            f"--plugin-dir={p.kubelet / 'plugins' / 'gpu.example.com'}",
            f"--cdi-dir={p.cdi}",
        ]
        self.cluster.spawn(self.process("dra-plugin"), argv)

    def _wait_slice(self, name: str) -> None:
        def published() -> bool:
            proc = self.cluster.kubectl(
                "get",
                "resourceslices",
                f"--field-selector=spec.nodeName={name}",
                "-o",
                "json",
                check=False,
            )
            items = json.loads(proc.stdout or "{}").get("items", []) if proc.returncode == 0 else []
            return any(s["spec"]["driver"] == "gpu.example.com" for s in items)

        self.cluster.wait_ready(self.process("dra-plugin"), timeout=60, probe=published)

    # -- teardown ---------------------------------------------------------------------------

    def down(self, *, quiet: bool = False, out: TextIO = sys.stderr) -> None:
        """Stop the node and remove what it left: pods' processes, mounts, cgroups, state, the
        Node object.  Safe to run on a half-started or crashed node, and when none exists."""
        if not self.paths.root.exists():
            return
        name = self.info().get("name")
        api_up = bool(self.cluster.state.get("ports")) and self.cluster.ready("kube-apiserver")
        if name and api_up and self.is_running():
            self._drain(name)
        for proc_name in reversed(self.processes):
            self.cluster.stop(proc_name, quiet=quiet, out=out)
        self._kill_containers()
        self._stop_leftovers()
        self._remove_shim_sockets()
        self._unmount_all()
        self._remove_cgroups()
        slot = self.info().get("slot")
        if isinstance(slot, int):
            node_net.destroy(node_net.NodeNet(slot))
        _remove_host_leftovers(self.paths.root)
        if name and api_up:
            self.cluster.kubectl("delete", "node", name, "--ignore-not-found", check=False)
        shutil.rmtree(self.paths.root, ignore_errors=True)
        if self.paths.root.exists():
            raise NodeError(f"could not remove {self.paths.root} (still mounted?)")
        if not quiet:
            print("real node removed", file=out)

    def _drain(self, name: str) -> None:
        """Let the kubelet stop the pods and unprepare their claims before it goes away."""
        self.cluster.kubectl(
            "delete",
            "pods",
            "-A",
            f"--field-selector=spec.nodeName={name}",
            "--grace-period=1",
            "--wait=true",
            "--timeout=60s",
            check=False,
            timeout=90,
        )

    def _kill_containers(self) -> None:
        """Anything the kubelet did not stop: runc's own state root names every container."""
        runc = str(node_build.APT_PACKAGES["runc"])
        if not self.paths.runc.exists() or not Path(runc).exists():
            return
        for ns_dir in self.paths.runc.iterdir():
            for ctr in ns_dir.iterdir() if ns_dir.is_dir() else []:
                for argv in (["kill", ctr.name, "KILL"], ["delete", "--force", ctr.name]):
                    subprocess.run(
                        [runc, f"--root={ns_dir}", *argv], capture_output=True, timeout=30
                    )

    def _stop_leftovers(self) -> None:
        """Shims (and anything else) whose command line names our node directory."""
        mine = str(self.paths.root) + "/"
        victims = [
            int(d.name)
            for d in Path("/proc").iterdir()
            if d.name.isdigit()
            and int(d.name) != os.getpid()
            and mine in " ".join(pid_cmdline(int(d.name)))
        ]
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while any(pid_alive(pid) for pid in victims) and time.monotonic() < deadline:
            time.sleep(0.05)

    def _remove_shim_sockets(self) -> None:
        """A shim killed by a crash leaves its socket in SHIM_SOCKETS, a directory containerd
        fixes for root.  The name is sha256("<containerd socket>/<namespace>/<sandbox id>")."""
        tasks = self.paths.containerd / "state" / "io.containerd.runtime.v2.task"
        for task in tasks.glob("*/*"):
            for suffix in ("", "/debug"):
                path = f"{self.paths.containerd_sock}/{task.parent.name}/{task.name}{suffix}"
                (SHIM_SOCKETS / hashlib.sha256(path.encode()).hexdigest()).unlink(missing_ok=True)

    def _unmount_all(self) -> None:
        mine = str(self.paths.root.resolve()) + "/"
        for _ in range(3):
            points = [m for m in _mount_points() if (m + "/").startswith(mine)]
            if not points:
                return
            for point in sorted(points, key=len, reverse=True):
                subprocess.run(["umount", "-l", point], capture_output=True, timeout=30)

    def _remove_cgroups(self) -> None:
        for d in self._cgroup_dirs():
            if not d.exists():
                continue
            for sub in sorted(
                (x for x in d.rglob("*") if x.is_dir()), key=lambda x: len(x.parts), reverse=True
            ):
                with contextlib.suppress(OSError):
                    sub.rmdir()
            with contextlib.suppress(OSError):
                d.rmdir()


def _http_ok(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def _mount_points() -> list[str]:
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    # Field 5 is the mount point, with spaces etc. octal-escaped.
    return [line.split()[4].encode().decode("unicode_escape") for line in lines]


def _remove_host_leftovers(root: Path) -> None:
    """Two host paths are fixed: the kubelet links /var/log/containers/*.log to its pod logs,
    and runc shims make their sockets under /run/containerd/s.  Drop our links, then each
    directory once empty (another node may still be using it)."""
    logs = Path("/var/log/containers")
    if logs.is_dir():
        for link in logs.iterdir():
            with contextlib.suppress(OSError):
                if link.is_symlink() and str(link.readlink()).startswith(f"{root}/"):
                    link.unlink()
    for empty in (logs, SHIM_SOCKETS, SHIM_SOCKETS.parent):
        with contextlib.suppress(OSError):
            empty.rmdir()


def apiserver_kubelet_rbac() -> dict[str, Any]:
    """What the API server's kubelet client may do on kubelets: logs, exec, metrics."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "kubectl-dra-apiserver-kubelet-client"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "system:kubelet-api-admin",
        },
        "subjects": [
            {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "User",
                "name": APISERVER_KUBELET_USER,
            }
        ],
    }


# -- pods for the real node (pure) ----------------------------------------------------------------


def for_real_node(
    docs: list[dict[str, Any]], image: str = node_build.BUSYBOX_IMAGE
) -> list[dict[str, Any]]:
    """The user's scenario objects, with each pod made runnable on the real node.

    Pinned by label (the simulated example-driver nodes publish the same driver's devices),
    with our local busybox instead of a registry image: `bash -c` becomes `sh -c`, whose
    `export` prints the same variables.  They keep their own network (node_net.py).
    """
    out = []
    for doc in docs:
        doc = copy.deepcopy(doc)
        if doc.get("kind") == "Pod":
            spec = doc.setdefault("spec", {})
            spec.setdefault("nodeSelector", {})[REAL_NODE_LABEL] = "true"
            for c in [*spec.get("initContainers", []), *spec.get("containers", [])]:
                c["image"], c["imagePullPolicy"] = image, "Never"
                if c.get("command", [None])[0] == "bash":
                    c["command"] = ["sh", *c["command"][1:]]
        out.append(doc)
    return out


_ENV_LINE = re.compile(r"^(?:export|declare -x) (GPU_DEVICE_\w+)=(['\"]?)(.*)\2$")


def gpu_env(log_text: str) -> dict[str, str]:
    """The GPU_DEVICE_* variables in the output of `export` (busybox sh or bash)."""
    return {m[1]: m[3] for line in log_text.splitlines() if (m := _ENV_LINE.match(line.strip()))}
