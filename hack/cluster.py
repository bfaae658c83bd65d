#!/usr/bin/env python3
"""A local Kubernetes control plane from source: etcd, API server, controller-manager, scheduler.

    python hack/cluster.py up        # build (cached), start, apply simulated GPU nodes
    python hack/cluster.py status
    python hack/cluster.py down      # stop only what `up` started (pid files), free the ports

Why this shape:
- No Docker/kind on our machines, so the upstream binaries run as plain processes on 127.0.0.1,
  on free ports, with all state under `.cluster/` (gitignored; `KUBECTL_DRA_CLUSTER_DIR` moves it).
- Every certificate comes from `webhook/ops/certs.py` (one CA; etcd and the API server serve TLS;
  each component authenticates with its own client certificate; the admin user is in
  `system:masters`).  Authorization is Node,RBAC, as in a real cluster, so RBAC mistakes of our
  webhook show up here and not in production.
- Simulated GPU nodes are objects we write (hack/fakegpu.py), and the node lifecycle controller
  is disabled, because without heartbeats it would mark them NotReady after ~40 s, taint them
  and evict.  Pods bound to them never run.  One real node (hack/node.py: containerd, a kubelet
  and a DRA plugin) runs the pods that must show what a container sees.
- Each `up` starts from an empty etcd: tests get a known state and nothing leaks between runs.

Longer than 500 lines: it is one process supervisor (start, readiness, pid-checked stop) plus the
configuration of each component it starts, including the webhook's registration; the real node
lives apart in hack/node.py.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import copy
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

HACK = Path(__file__).resolve().parent
ROOT = HACK.parent
sys.path.insert(0, str(HACK))
sys.path.insert(0, str(ROOT))

import fakegpu  # noqa: E402
import k8s_build  # noqa: E402
import node  # noqa: E402

from dracore.policy import Policy  # noqa: E402
from webhook.ops import certs  # noqa: E402

COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
SERVICE_CIDR = "10.96.0.0/16"
ADMIN_USER = "kubectl-dra-admin"
# Feature gates we want on when the built release still has them as a (non-GA) gate:
# DRAExtendedResource is alpha in 1.34 (KEP-5004); later it is on or locked.
WANTED_GATES = ("DRAExtendedResource",)


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
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


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


def kubeconfig_dict(
    *, server: str, ca_pem: bytes, user: str, pair: certs.KeyPair
) -> dict[str, Any]:
    b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "kubectl-dra",
                "cluster": {"server": server, "certificate-authority-data": b64(ca_pem)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": b64(pair.cert_pem),
                    "client-key-data": b64(pair.key_pem),
                },
            }
        ],
        "contexts": [{"name": "kubectl-dra", "context": {"cluster": "kubectl-dra", "user": user}}],
        "current-context": "kubectl-dra",
    }


class Cluster:
    """One local control plane rooted at a state directory."""

    def __init__(self, root: Path | None = None, *, version: str | None = None) -> None:
        self.paths = Paths(root or state_dir())
        self._state: dict[str, Any] | None = None
        self.version = k8s_build.resolve_version(version) if version else None

    # -- state ---------------------------------------------------------------------------------

    @property
    def state(self) -> dict[str, Any]:
        if self._state is None:
            try:
                self._state = json.loads(self.paths.state.read_text())
            except FileNotFoundError:
                self._state = {}
        return self._state

    def _save_state(self, state: dict[str, Any]) -> None:
        self._state = state
        self.paths.state.write_text(json.dumps(state, indent=2) + "\n")

    @property
    def kubeconfig(self) -> Path:
        return self.paths.kubeconfig

    @property
    def bin_dir(self) -> Path:
        return Path(self.state.get("binDir") or k8s_build.bin_dir(self.version))

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.state['ports']['apiserver']}"

    def kubectl_path(self) -> Path:
        return self.bin_dir / "kubectl"

    # -- lifecycle -----------------------------------------------------------------------------

    def is_running(self) -> bool:
        if not self.state.get("ports"):
            return False
        for name in COMPONENTS:
            pid = self._read_pid(name)
            if pid is None or not pid_alive(pid):
                return False
        return self._ready("kube-apiserver")

    def up(self, *, fixtures: bool = True, out: Any = sys.stderr) -> None:
        if self.is_running():
            wanted = self.version or k8s_build.selected_version()
            if self.state.get("version") != wanted:
                raise ClusterError(
                    f"a v{self.state.get('version')} cluster runs in {self.paths.root}; "
                    f"stop it (make cluster-down) to start v{wanted}"
                )
            print(f"cluster already running (kubeconfig {self.kubeconfig})", file=out)
            return
        self.down(quiet=True)  # stale pid files / half-started state
        version = self.version or k8s_build.selected_version()
        bin_dir = k8s_build.build(version, out=out)
        # Wipe only what we own: other clusters (e.g. the e2e one) may live in sub-directories.
        for old in (self.paths.pki, self.paths.logs, self.paths.pids, self.paths.etcd_data):
            shutil.rmtree(old, ignore_errors=True)
        for d in (self.paths.pki, self.paths.logs, self.paths.pids):
            d.mkdir(parents=True, exist_ok=True)
        etcd_client, etcd_peer, apiserver, kcm, sched = free_ports(5)
        state = {
            "version": version,
            "binDir": str(bin_dir),
            "ports": {
                "etcd": etcd_client,
                "etcdPeer": etcd_peer,
                "apiserver": apiserver,
                "controllerManager": kcm,
                "scheduler": sched,
            },
            "startedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        self._save_state(state)
        t0 = time.monotonic()
        self._write_pki()
        gates = self._feature_gates()
        try:
            self._start_etcd()
            self._start_apiserver(gates)
            self._start_controller_manager(gates)
            self._start_scheduler(gates)
            if fixtures:
                self.apply_fixtures()
        except BaseException:
            self.down(quiet=True)
            raise
        print(
            f"cluster up in {time.monotonic() - t0:.0f}s: v{version}, API {self.server}\n"
            f"  export KUBECONFIG={self.kubeconfig}\n"
            f"  alias kubectl={self.kubectl_path()}\n"
            f"  stop with: make cluster-down",
            file=out,
        )

    def down(self, *, quiet: bool = False, out: Any = sys.stderr) -> None:
        """Stop the processes we started (pid files only), newest first; free their ports."""
        node.RealNode(self).down(quiet=quiet, out=out)
        names = [*self._extra_pid_names(), *reversed(COMPONENTS)]
        for name in names:
            self._stop(name, quiet=quiet, out=out)
        ports = [p for p in (self.state.get("ports") or {}).values() if isinstance(p, int)]
        deadline = time.monotonic() + 10
        while any(port_open(p) for p in ports) and time.monotonic() < deadline:
            time.sleep(0.1)
        busy = [p for p in ports if port_open(p)]
        if busy and not quiet:
            print(f"warning: ports still in use after stop: {busy}", file=out)
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(self.paths.etcd_data)
        if self.paths.state.exists():
            self.paths.state.unlink()
        self._state = None
        if not quiet:
            print("cluster stopped", file=out)

    def status(self, *, out: Any = sys.stdout) -> bool:
        if not self.state.get("ports"):
            print(f"no cluster state in {self.paths.root}", file=out)
            return False
        ok = True
        print(
            f"Kubernetes v{self.state['version']}  API {self.server}  kubeconfig {self.kubeconfig}",
            file=out,
        )
        for name in [*COMPONENTS, *self._extra_pid_names()]:
            pid = self._read_pid(name)
            alive = pid is not None and pid_alive(pid)
            ready = alive and self._ready(name)
            ok = ok and ready
            word = "ready" if ready else ("running" if alive else "stopped")
            print(f"  {name:<26} pid {pid or '-':<8} {word}", file=out)
        return ok

    # -- processes -----------------------------------------------------------------------------

    def _extra_pid_names(self) -> list[str]:
        """Other processes started under this state dir (webhooks), so `down` stops them too."""
        if not self.paths.pids.exists():
            return []
        return sorted(p.stem for p in self.paths.pids.glob("*.pid") if p.stem not in COMPONENTS)

    def _read_pid(self, name: str) -> int | None:
        try:
            return int(self.paths.pid(name).read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

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

    def _stop(self, name: str, *, quiet: bool, out: Any) -> None:
        pid = self._read_pid(name)
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

    def _ssl_context(self, *, client: bool = True) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.paths.pki / "ca.crt"))
        if client:
            ctx.load_cert_chain(self.paths.pki / "admin.crt", self.paths.pki / "admin.key")
        return ctx

    def _health_url(self, name: str) -> str:
        ports = self.state["ports"]
        if name.startswith("webhook-"):
            info = self.webhook_dir(name.removeprefix("webhook-")) / "info.json"
            port = json.loads(info.read_text())["port"] if info.exists() else None
            return f"https://127.0.0.1:{port}/readyz" if port else ""
        return {
            "etcd": f"https://127.0.0.1:{ports['etcd']}/health",
            "kube-apiserver": f"https://127.0.0.1:{ports['apiserver']}/readyz",
            "kube-controller-manager": f"https://127.0.0.1:{ports['controllerManager']}/healthz",
            "kube-scheduler": f"https://127.0.0.1:{ports['scheduler']}/readyz",
        }.get(name, "")

    def _ready(self, name: str) -> bool:
        url = self._health_url(name)
        if not url:
            pid = self._read_pid(name)
            return pid is not None and pid_alive(pid)
        try:
            ctx = self._ssl_context(client=name in ("etcd", "kube-apiserver"))
            with urllib.request.urlopen(url, context=ctx, timeout=2) as resp:
                body = resp.read().decode(errors="replace")
                return resp.status == 200 and (name != "etcd" or '"health":"true"' in body)
        except (urllib.error.URLError, OSError, ssl.SSLError):
            return False

    def wait_ready(self, name: str, *, timeout: float = 60, probe: Any = None) -> None:
        pid = self._read_pid(name)
        deadline = time.monotonic() + timeout
        check = probe or (lambda: self._ready(name))
        while time.monotonic() < deadline:
            if pid is not None and not pid_alive(pid):
                tail = log_tail(self.paths.log(name))
                raise ClusterError(f"{name} exited during start-up; last log lines:\n{tail}")
            if check():
                return
            time.sleep(0.2)
        tail = log_tail(self.paths.log(name))
        raise ClusterError(f"{name} not ready after {timeout:.0f}s; last log lines:\n{tail}")

    # -- certificates and kubeconfigs ----------------------------------------------------------

    def _write_pki(self) -> None:
        pki = self.paths.pki
        ca = certs.generate_ca("kubectl-dra-local-ca")
        certs.write_public(pki / "ca.crt", ca.cert_pem)
        certs.write_private(pki / "ca.key", ca.key_pem)
        loopback = {"dns_names": ["localhost"], "ip_addresses": ["127.0.0.1"]}

        def leaf(name: str, cn: str, **kw: Any) -> certs.KeyPair:
            pair = certs.issue_cert(ca, cn, **kw)
            certs.write_public(pki / f"{name}.crt", pair.cert_pem)
            certs.write_private(pki / f"{name}.key", pair.key_pem)
            return pair

        leaf("etcd-server", "etcd", **loopback)
        leaf("etcd-client", "kube-apiserver-etcd-client", server=False, client=True)
        leaf(
            "apiserver",
            "kube-apiserver",
            dns_names=[
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ],
            ip_addresses=["127.0.0.1", "10.96.0.1"],
        )
        leaf("controller-manager", "kube-controller-manager", **loopback)
        leaf("scheduler", "kube-scheduler", **loopback)
        # How the API server authenticates to a kubelet (logs, exec); see hack/node.py.
        leaf("apiserver-kubelet-client", node.APISERVER_KUBELET_USER, server=False, client=True)
        # Service-account tokens: the API server signs with this key, the controller-manager
        # mints controller tokens with it.  The certificate is only a container for the public
        # key (the API server accepts a certificate in --service-account-key-file).
        leaf("service-account", "service-accounts", server=False, client=True)
        self._write_admission_client()

        server = self.server
        users = {
            "kubeconfig": (ADMIN_USER, ["system:masters"]),
            "controller-manager.kubeconfig": ("system:kube-controller-manager", []),
            "scheduler.kubeconfig": ("system:kube-scheduler", []),
        }
        for filename, (user, groups) in users.items():
            pair = certs.issue_cert(ca, user, organizations=groups, server=False, client=True)
            if filename == "kubeconfig":
                certs.write_public(pki / "admin.crt", pair.cert_pem)
                certs.write_private(pki / "admin.key", pair.key_pem)
            cfg = kubeconfig_dict(server=server, ca_pem=ca.cert_pem, user=user, pair=pair)
            certs.write_private(self.paths.root / filename, yaml.safe_dump(cfg).encode())

    def _write_admission_client(self) -> None:
        """The client certificate the API server presents to webhooks, from a CA of its own.

        The webhook trusts only that CA (`--client-ca`) and only this name (`--client-name`), so
        no kubeconfig user of the cluster CA can call it. The AdmissionConfiguration's
        kubeConfigFile gives the certificate for every webhook (`*`): ours are the only ones.
        """
        pki = self.paths.pki
        client_ca = certs.generate_ca("kubectl-dra-admission-client-ca")
        certs.write_public(pki / "admission-client-ca.crt", client_ca.cert_pem)
        pair = certs.issue_cert(client_ca, ADMISSION_CLIENT_NAME, server=False, client=True)
        certs.write_public(pki / "admission-client.crt", pair.cert_pem)
        certs.write_private(pki / "admission-client.key", pair.key_pem)
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "users": [
                {
                    "name": "*",
                    "user": {
                        "client-certificate": str(pki / "admission-client.crt"),
                        "client-key": str(pki / "admission-client.key"),
                    },
                }
            ],
        }
        certs.write_private(pki / "admission-kubeconfig", yaml.safe_dump(kubeconfig).encode())
        plugin = {
            "apiVersion": "apiserver.config.k8s.io/v1",
            "kind": "WebhookAdmissionConfiguration",
            "kubeConfigFile": str(pki / "admission-kubeconfig"),
        }
        admission = {
            "apiVersion": "apiserver.config.k8s.io/v1",
            "kind": "AdmissionConfiguration",
            "plugins": [
                {"name": name, "configuration": plugin}
                for name in ("MutatingAdmissionWebhook", "ValidatingAdmissionWebhook")
            ],
        }
        certs.write_public(pki / "admission.yaml", yaml.safe_dump(admission).encode())

    def issue_client_kubeconfig(self, path: Path, *, user: str, groups: Sequence[str] = ()) -> Path:
        """A kubeconfig for `user` (client cert from our CA): e.g. the webhook's own identity."""
        pki = self.paths.pki
        ca = certs.load_key_pair(pki / "ca.crt", pki / "ca.key")
        pair = certs.issue_cert(ca, user, organizations=groups, server=False, client=True)
        cfg = kubeconfig_dict(server=self.server, ca_pem=ca.cert_pem, user=user, pair=pair)
        certs.write_private(path, yaml.safe_dump(cfg).encode())
        return path

    # -- components ----------------------------------------------------------------------------

    def _feature_gates(self) -> str:
        """`--feature-gates` value: WANTED_GATES that this release still lists as alpha/beta."""
        help_text = subprocess.run(
            [str(self.bin_dir / "kube-apiserver"), "--help"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        enabled = []
        for gate in WANTED_GATES:
            # 1.37 prints "kube:Name=true|false (BETA - ...)"; older releases have no prefix.
            if re.search(rf"^\s*(?:kube:)?{gate}=true\|false \((ALPHA|BETA)", help_text, re.M):
                enabled.append(f"{gate}=true")
        return ",".join(enabled)

    def _start_etcd(self) -> None:
        p, pki = self.state["ports"], self.paths.pki
        self.spawn(
            "etcd",
            [
                str(self.bin_dir / "etcd"),
                "--name=kubectl-dra",
                f"--data-dir={self.paths.etcd_data}",
                f"--listen-client-urls=https://127.0.0.1:{p['etcd']}",
                f"--advertise-client-urls=https://127.0.0.1:{p['etcd']}",
                f"--listen-peer-urls=http://127.0.0.1:{p['etcdPeer']}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{p['etcdPeer']}",
                f"--initial-cluster=kubectl-dra=http://127.0.0.1:{p['etcdPeer']}",
                f"--cert-file={pki / 'etcd-server.crt'}",
                f"--key-file={pki / 'etcd-server.key'}",
                f"--trusted-ca-file={pki / 'ca.crt'}",
                "--client-cert-auth=true",
                # A throw-away test store: fsync only costs time here.
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
        )
        # etcd's /health needs a client cert; the admin one is signed by the same CA.
        self.wait_ready("etcd", timeout=30)

    def _start_apiserver(self, gates: str) -> None:
        p, pki = self.state["ports"], self.paths.pki
        argv = [
            str(self.bin_dir / "kube-apiserver"),
            f"--etcd-servers=https://127.0.0.1:{p['etcd']}",
            f"--etcd-cafile={pki / 'ca.crt'}",
            f"--etcd-certfile={pki / 'etcd-client.crt'}",
            f"--etcd-keyfile={pki / 'etcd-client.key'}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={p['apiserver']}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            # Presents pki/admission-client.crt to webhooks (they run with --client-ca).
            f"--admission-control-config-file={pki / 'admission.yaml'}",
            "--authorization-mode=Node,RBAC",
            # Added to the default set; MutatingAdmissionWebhook is what our webhook needs.
            "--enable-admission-plugins=NodeRestriction,MutatingAdmissionWebhook,ValidatingAdmissionWebhook",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'service-account.crt'}",
            f"--service-account-signing-key-file={pki / 'service-account.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            # Endpoints may not hold loopback IPs; nothing here dials the `kubernetes` Service.
            "--endpoint-reconciler-type=none",
            "--allow-privileged=true",
            f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
            f"--kubelet-certificate-authority={pki / 'ca.crt'}",
            # The real node's name resolves to 127.0.0.1; its InternalIP is the host's own
            # address, which nothing here may dial.
            "--kubelet-preferred-address-types=Hostname",
            "--profiling=false",
            "--v=1",
        ]
        if gates:
            argv.append(f"--feature-gates={gates}")
        self.spawn("kube-apiserver", argv)
        self.wait_ready("kube-apiserver", timeout=120)

    def _controllers_flag(self) -> str:
        """Every default controller but node lifecycle (its name changed across releases)."""
        help_text = subprocess.run(
            [str(self.bin_dir / "kube-controller-manager"), "--help"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        name = (
            "node-lifecycle-controller"
            if "node-lifecycle-controller" in help_text
            else "nodelifecycle"
        )
        return f"--controllers=*,-{name}"

    def _start_controller_manager(self, gates: str) -> None:
        p, pki, root = self.state["ports"], self.paths.pki, self.paths.root
        kcfg = root / "controller-manager.kubeconfig"
        argv = [
            str(self.bin_dir / "kube-controller-manager"),
            f"--kubeconfig={kcfg}",
            f"--authentication-kubeconfig={kcfg}",
            f"--authorization-kubeconfig={kcfg}",
            "--bind-address=127.0.0.1",
            f"--secure-port={p['controllerManager']}",
            f"--tls-cert-file={pki / 'controller-manager.crt'}",
            f"--tls-private-key-file={pki / 'controller-manager.key'}",
            f"--service-account-private-key-file={pki / 'service-account.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}",
            f"--cluster-signing-key-file={pki / 'ca.key'}",
            "--use-service-account-credentials=true",
            self._controllers_flag(),
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--leader-elect=false",
            "--v=1",
        ]
        if gates:
            argv.append(f"--feature-gates={gates}")
        self.spawn("kube-controller-manager", argv)
        self.wait_ready("kube-controller-manager", timeout=60)

    def _start_scheduler(self, gates: str) -> None:
        p, pki, root = self.state["ports"], self.paths.pki, self.paths.root
        kcfg = root / "scheduler.kubeconfig"
        argv = [
            str(self.bin_dir / "kube-scheduler"),
            f"--kubeconfig={kcfg}",
            f"--authentication-kubeconfig={kcfg}",
            f"--authorization-kubeconfig={kcfg}",
            "--bind-address=127.0.0.1",
            f"--secure-port={p['scheduler']}",
            f"--tls-cert-file={pki / 'scheduler.crt'}",
            f"--tls-private-key-file={pki / 'scheduler.key'}",
            "--leader-elect=false",
            "--v=1",
        ]
        if gates:
            argv.append(f"--feature-gates={gates}")
        self.spawn("kube-scheduler", argv)
        self.wait_ready("kube-scheduler", timeout=60)

    # -- our webhook -----------------------------------------------------------------------------

    def webhook_dir(self, name: str) -> Path:
        return self.paths.root / "webhooks" / name

    def webhook_up(
        self,
        name: str = "default",
        *,
        policy: Path | None = None,
        namespace_selector: dict[str, Any] | None = None,
        failure_policy: str = "Fail",
        out: Any = sys.stderr,
    ) -> WebhookInfo:
        """Serve `dra-webhook` on loopback over TLS and register it for legacy-GPU pods.

        It runs as the ServiceAccount of manifests/base/rbac.yaml (a client certificate for that
        user), with the shipped ClusterRole, and with `--client-ca`: only the API server's
        admission client certificate gets past the TLS handshake. The registration is the
        shipped MutatingWebhookConfiguration (see `registration_from_manifests`).

        Several webhooks may run at once (one per policy), each registered with its own
        MutatingWebhookConfiguration `kubectl-dra-<name>`.  Unless `namespace_selector` says
        otherwise, instance `default` serves namespaces without the label INSTANCE_LABEL and
        instance `<name>` those labelled `INSTANCE_LABEL=<name>`: each namespace has one policy.
        """
        if namespace_selector is None:
            namespace_selector = (
                {"matchExpressions": [{"key": INSTANCE_LABEL, "operator": "DoesNotExist"}]}
                if name == "default"
                else {"matchLabels": {INSTANCE_LABEL: name}}
            )
        self.webhook_down(name, quiet=True)
        wdir = self.webhook_dir(name)
        cert_dir = wdir / "certs"
        pki = self.paths.pki
        client_ca = pki / "admission-client-ca.crt"
        if not client_ca.is_file():
            raise ClusterError(
                f"{client_ca} is missing: this control plane predates webhook client "
                "certificates; restart it (make cluster-down cluster-up)"
            )
        ca = certs.load_key_pair(pki / "ca.crt", pki / "ca.key")
        leaf = certs.issue_cert(
            ca, "kubectl-dra-webhook", dns_names=["localhost"], ip_addresses=["127.0.0.1"]
        )
        certs.write_tls_dir(cert_dir, leaf=leaf, ca=ca)
        kubeconfig = wdir / "kubeconfig"
        self.issue_client_kubeconfig(kubeconfig, user=WEBHOOK_USER, groups=WEBHOOK_GROUPS)
        self.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(webhook_rbac()))
        (port,) = free_ports(1)
        argv = [
            *webhook_command(),
            "serve",
            f"--cert-dir={cert_dir}",
            "--host=127.0.0.1",
            f"--port={port}",
            f"--kubeconfig={kubeconfig}",
            f"--client-ca={client_ca}",
            f"--client-name={ADMISSION_CLIENT_NAME}",
        ]
        if policy is not None:
            argv.append(f"--policy={Path(policy).resolve()}")
        pid_name = f"webhook-{name}"
        self.spawn(pid_name, argv)
        url = f"https://127.0.0.1:{port}"
        # Readiness over a TLS connection that presents the API server's client certificate.
        self.wait_ready(pid_name, timeout=90, probe=lambda: self._https_ok(f"{url}/readyz"))
        # The policy's exempt namespaces are never even sent (the webhook would pass them anyway).
        loaded = Policy.from_file(policy) if policy is not None else Policy.default()
        config = registration_from_manifests(
            name,
            url=f"{url}/mutate",
            ca_pem=ca.cert_pem,
            namespace_selector=namespace_selector,
            failure_policy=failure_policy,
            exempt_namespaces=sorted(loaded.exempt_namespaces | {"kube-system"}),
        )
        (wdir / "registration.yaml").write_text(yaml.safe_dump(config))
        self.webhook_register(name)
        info = WebhookInfo(
            name=name, port=port, config_name=config["metadata"]["name"], pid_name=pid_name
        )
        (wdir / "info.json").write_text(json.dumps(info.__dict__) + "\n")
        print(f"webhook {name} serving on {url} (policy: {policy or 'built-in default'})", file=out)
        return info

    def webhook_register(self, name: str = "default") -> None:
        """(Re-)create the MutatingWebhookConfiguration of a started webhook instance."""
        self.kubectl("apply", "-f", str(self.webhook_dir(name) / "registration.yaml"))

    def webhook_unregister(self, name: str = "default") -> None:
        self.kubectl(
            "delete", "mutatingwebhookconfiguration", f"kubectl-dra-{name}", "--ignore-not-found"
        )

    def webhook_down(
        self, name: str = "default", *, unregister: bool = True, quiet: bool = False
    ) -> None:
        """Stop webhook `name`; with unregister, also delete its MutatingWebhookConfiguration."""
        self._stop(f"webhook-{name}", quiet=quiet, out=sys.stderr)
        if unregister and self.state.get("ports") and self._ready("kube-apiserver"):
            self.webhook_unregister(name)

    def _https_ok(self, url: str) -> bool:
        context = self._ssl_context(client=False)
        pki = self.paths.pki
        if (pki / "admission-client.crt").is_file():
            context.load_cert_chain(pki / "admission-client.crt", pki / "admission-client.key")
        try:
            with urllib.request.urlopen(url, context=context, timeout=2) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError, ssl.SSLError):
            return False

    # -- API helpers ---------------------------------------------------------------------------

    def api_client(self) -> Any:
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))

    def apply_fixtures(
        self, nodes: Sequence[fakegpu.FakeNode] | None = None
    ) -> list[fakegpu.FakeNode]:
        with self.api_client() as api:
            return fakegpu.apply_cluster_fixtures(api, nodes=nodes)

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(self.kubectl_path()), f"--kubeconfig={self.kubeconfig}", *args],
            capture_output=True,
            text=True,
            input=input,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise ClusterError(
                f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr.strip()}"
            )
        return proc


# ---------------------------------------------------------------------------------------------
# Our webhook: identity, RBAC and registration

# The webhook's identity: the ServiceAccount that manifests/base/rbac.yaml binds.
WEBHOOK_USER = "system:serviceaccount:kubectl-dra:kubectl-dra-webhook"
WEBHOOK_GROUPS = ("system:serviceaccounts", "system:serviceaccounts:kubectl-dra")
# The subject the API server's admission client certificate carries (pki/admission-client.crt).
ADMISSION_CLIENT_NAME = "kube-apiserver-admission-client"
MANIFESTS_BASE = Path(__file__).resolve().parents[1] / "manifests" / "base"
# Which webhook instance (policy) serves a namespace; see Cluster.webhook_up.
INSTANCE_LABEL = "kubectl-dra.io/webhook"


@dataclass(frozen=True)
class WebhookInfo:
    name: str
    port: int
    config_name: str
    pid_name: str


def webhook_command() -> list[str]:
    """The `dra-webhook` console script of this venv (falls back to `python -m webhook`)."""
    script = Path(sys.executable).parent / "dra-webhook"
    return [str(script)] if script.exists() else [sys.executable, "-m", "webhook"]


def _manifest(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((MANIFESTS_BASE / name).read_text()) if d]


def webhook_rbac() -> list[dict[str, Any]]:
    """The shipped ClusterRole and ClusterRoleBinding (manifests/base/rbac.yaml), unchanged.

    The binding names the ServiceAccount kubectl-dra/kubectl-dra-webhook; the webhook here
    authenticates as that user with a client certificate, so it has exactly the rights users
    deploy. (The ServiceAccount object itself is not needed for that, nor its namespace.)
    """
    return [d for d in _manifest("rbac.yaml") if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]


def registration_from_manifests(
    name: str,
    *,
    url: str,
    ca_pem: bytes,
    namespace_selector: dict[str, Any] | None = None,
    failure_policy: str = "Fail",
    exempt_namespaces: Sequence[str] = ("kube-system",),
) -> dict[str, Any]:
    """manifests/base's MutatingWebhookConfiguration for instance `name` (`kubectl-dra-<name>`).

    Changed: the names (several instances may be registered), `clientConfig` (a URL on
    loopback instead of the in-cluster Service) and the namespaceSelector (the instance's
    namespaces and the policy's exempt ones, added to the shipped expressions). Rules,
    matchConditions, timeoutSeconds, sideEffects, reinvocation and (unless asked otherwise)
    failurePolicy are what users deploy.
    """
    (config,) = _manifest("mutatingwebhookconfiguration.yaml")
    config = copy.deepcopy(config)
    config["metadata"] = {
        "name": f"kubectl-dra-{name}",
        "labels": {"app.kubernetes.io/managed-by": "kubectl-dra"},
    }
    for hook in config["webhooks"]:
        hook["name"] = f"{name}.{hook['name']}"
        hook["clientConfig"] = {"url": url, "caBundle": base64.b64encode(ca_pem).decode()}
        selector = hook.setdefault("namespaceSelector", {})
        extra = dict(namespace_selector or {})
        if extra.get("matchLabels"):
            selector["matchLabels"] = {**selector.get("matchLabels", {}), **extra["matchLabels"]}
        selector["matchExpressions"] = [
            *selector.get("matchExpressions", []),
            *extra.get("matchExpressions", []),
            {
                "key": "kubernetes.io/metadata.name",
                "operator": "NotIn",
                "values": list(exempt_namespaces),
            },
        ]
        if failure_policy != hook["failurePolicy"]:
            hook["failurePolicy"] = failure_policy
    return config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="local Kubernetes control plane for kubectl-dra")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_up = sub.add_parser("up", help="build (cached) and start; apply simulated GPU nodes")
    p_up.add_argument(
        "--no-fixtures", action="store_true", help="do not create nodes/slices/classes"
    )
    p_up.add_argument("--node", action="store_true", help="also start the real node (node-up)")
    sub.add_parser("node-up", help="start one real node (kubelet, containerd, DRA plugin)")
    sub.add_parser("node-down", help="stop the real node and remove what it left behind")
    sub.add_parser("down", help="stop what `up` started")
    sub.add_parser("status", help="show component state")
    sub.add_parser("kubeconfig", help="print the admin kubeconfig path")
    p_wh = sub.add_parser("webhook-up", help="serve our webhook on loopback and register it")
    p_wh.add_argument("--name", default="default")
    p_wh.add_argument("--policy", type=Path, help="GPUPolicy file (default: the built-in policy)")
    p_wh.add_argument("--failure-policy", choices=["Fail", "Ignore"], default="Fail")
    p_wh.add_argument(
        "--namespace-label",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"only namespaces with this label (repeatable); default: instance 'default' serves "
        f"namespaces without {INSTANCE_LABEL}, others those with {INSTANCE_LABEL}=<name>",
    )
    p_whd = sub.add_parser("webhook-down", help="stop our webhook and unregister it")
    p_whd.add_argument("--name", default="default")
    p_whd.add_argument("--keep-registration", action="store_true", help="leave the config in place")
    args = parser.parse_args(argv)
    cluster = Cluster()
    try:
        if args.cmd == "up":
            cluster.up(fixtures=not args.no_fixtures)
            if args.node:
                node.RealNode(cluster).up()
        elif args.cmd == "node-up":
            node.RealNode(cluster).up()
        elif args.cmd == "node-down":
            node.RealNode(cluster).down()
        elif args.cmd == "down":
            cluster.down()
            # Clusters of interrupted test or bench runs live in sub-directories.
            for state in sorted(cluster.paths.root.glob("*/state.json")):
                Cluster(state.parent).down()
        elif args.cmd == "status":
            return 0 if cluster.status() else 1
        elif args.cmd == "kubeconfig":
            print(cluster.kubeconfig)
        elif args.cmd == "webhook-up":
            labels = dict(item.split("=", 1) for item in args.namespace_label)
            cluster.webhook_up(
                args.name,
                policy=args.policy,
                failure_policy=args.failure_policy,
                namespace_selector={"matchLabels": labels} if labels else None,
            )
        elif args.cmd == "webhook-down":
            cluster.webhook_down(args.name, unregister=not args.keep_registration)
    except (ClusterError, node.NodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
