"""A local Kubernetes control plane from source: etcd, API server, controller-manager, scheduler.

Why this shape:
- No Docker/kind on our machines, so the upstream binaries run as plain processes on 127.0.0.1,
  on free ports, with all state under `.cluster/` (gitignored; `KUBECTL_DRA_CLUSTER_DIR` moves it).
- Every certificate comes from `webhook/ops/certs.py` (hack/pki.py).  Authorization is
  Node,RBAC, as in a real cluster, so RBAC mistakes of our webhook show up here and not in
  production.
- Simulated GPU nodes are objects we write (hack/fakegpu.py, applied by hack/fixtures.py).
  Pods bound to them never run.  One real node (hack/node.py) runs the pods that must show what
  a container sees; hack/cluster.py puts the two together.
- Each `up` starts from an empty etcd: tests get a known state and nothing leaks between runs.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from hack import components, fixtures, k8s_build, node_net, pki
from hack.fakegpu import FakeNode
from hack.procs import ClusterError, Paths, Processes, free_ports, pid_alive, port_open, state_dir


class ControlPlane:
    """One local control plane rooted at a state directory."""

    def __init__(
        self, root: Path | None = None, *, version: str | None = None, default_gates: bool = False
    ) -> None:
        """`default_gates`: run the release's feature gates as shipped (what users get) rather
        than turning on components.WANTED_GATES where they are still alpha or beta."""
        self.paths = Paths(root or state_dir())
        self.processes = Processes(self.paths)
        self._state: dict[str, Any] | None = None
        self.version = k8s_build.resolve_version(version) if version else None
        self.default_gates = default_gates

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
        host = self.state.get("apiAddress", "127.0.0.1")
        return f"https://{host}:{self.state['ports']['apiserver']}"

    def kubectl_path(self) -> Path:
        return self.bin_dir / "kubectl"

    # -- lifecycle -----------------------------------------------------------------------------

    def is_running(self) -> bool:
        if not self.state.get("ports"):
            return False
        for name in components.COMPONENTS:
            pid = self.read_pid(name)
            if pid is None or not pid_alive(pid):
                return False
        return self.ready("kube-apiserver")

    def up(self, *, fixtures: bool = True, out: TextIO = sys.stderr) -> None:
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
        # The real node (hack/node_build.py) builds the kubelet and kube-proxy it needs.
        bin_dir = k8s_build.build(version, only=k8s_build.CONTROL_PLANE, out=out)
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
            "apiAddress": node_net.HOST_ADDRESS,
            "startedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        self._save_state(state)
        t0 = time.monotonic()
        node_net.ensure_host()
        pki.write_control_plane_pki(self.paths, server=self.server)
        try:
            self._start_components()
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

    def _start_components(self) -> None:
        bin_dir, paths, ports = self.bin_dir, self.paths, self.state["ports"]
        gates = "" if self.default_gates else components.feature_gates(bin_dir)
        self._save_state({**self.state, "featureGates": gates})
        # etcd's /health needs a client cert; the admin one is signed by the same CA.
        self.spawn("etcd", components.etcd_argv(bin_dir, paths, ports))
        self.wait_ready("etcd", timeout=30)
        self.spawn("kube-apiserver", components.apiserver_argv(bin_dir, paths, ports, gates))
        self.wait_ready("kube-apiserver", timeout=120)
        kcm = components.controller_manager_argv(bin_dir, paths, ports, gates)
        self.spawn("kube-controller-manager", kcm)
        self.wait_ready("kube-controller-manager", timeout=60)
        self.spawn("kube-scheduler", components.scheduler_argv(bin_dir, paths, ports, gates))
        self.wait_ready("kube-scheduler", timeout=60)

    def down(self, *, quiet: bool = False, out: TextIO = sys.stderr) -> None:
        """Stop the processes we started (pid files only), newest first; free their ports."""
        names = [*self._extra_pid_names(), *reversed(components.COMPONENTS)]
        for name in names:
            self.stop(name, quiet=quiet, out=out)
        ports = [p for p in (self.state.get("ports") or {}).values() if isinstance(p, int)]
        deadline = time.monotonic() + 10
        while any(port_open(p) for p in ports) and time.monotonic() < deadline:
            time.sleep(0.1)
        busy = [p for p in ports if port_open(p)]
        node_net.release_host()
        if busy and not quiet:
            print(f"warning: ports still in use after stop: {busy}", file=out)
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(self.paths.etcd_data)
        if self.paths.state.exists():
            self.paths.state.unlink()
        self._state = None
        if not quiet:
            print("cluster stopped", file=out)

    def status(self, *, out: TextIO = sys.stdout) -> bool:
        if not self.state.get("ports"):
            print(f"no cluster state in {self.paths.root}", file=out)
            return False
        ok = True
        print(
            f"Kubernetes v{self.state['version']}  API {self.server}  kubeconfig {self.kubeconfig}",
            file=out,
        )
        for name in [*components.COMPONENTS, *self._extra_pid_names()]:
            pid = self.read_pid(name)
            alive = pid is not None and pid_alive(pid)
            ready = alive and self.ready(name)
            ok = ok and ready
            word = "ready" if ready else ("running" if alive else "stopped")
            print(f"  {name:<26} pid {pid or '-':<8} {word}", file=out)
        return ok

    # -- processes -----------------------------------------------------------------------------

    def _extra_pid_names(self) -> list[str]:
        """Other processes started under this state dir (webhooks), so `down` stops them too."""
        return [n for n in self.processes.names() if n not in components.COMPONENTS]

    def read_pid(self, name: str) -> int | None:
        return self.processes.read_pid(name)

    def spawn(self, name: str, argv: Sequence[str], *, env: dict[str, str] | None = None) -> int:
        return self.processes.spawn(name, argv, env=env)

    def stop(self, name: str, *, quiet: bool, out: TextIO = sys.stderr) -> None:
        self.processes.stop(name, quiet=quiet, out=out)

    def ssl_context(self, *, client: bool = True) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.paths.pki / "ca.crt"))
        if client:
            ctx.load_cert_chain(self.paths.pki / "admin.crt", self.paths.pki / "admin.key")
        return ctx

    def _health_url(self, name: str) -> str:
        if name.startswith("webhook-"):
            info = self.paths.webhook(name.removeprefix("webhook-")) / "info.json"
            port = json.loads(info.read_text())["port"] if info.exists() else None
            return f"https://127.0.0.1:{port}/readyz" if port else ""
        return components.health_urls(self.state["ports"]).get(name, "")

    def _check_route(self) -> None:
        """A cluster on HOST_ADDRESS is only dialled while that address is local."""
        if self.state.get("apiAddress") == node_net.HOST_ADDRESS:
            try:
                node_net.check_host()
            except node_net.NetError as exc:
                raise ClusterError(str(exc)) from None

    def ready(self, name: str) -> bool:
        if name == "kube-apiserver" and not node_net.host_ready():
            return False
        url = self._health_url(name)
        if not url:
            pid = self.read_pid(name)
            return pid is not None and pid_alive(pid)
        try:
            ctx = self.ssl_context(client=name in ("etcd", "kube-apiserver"))
            with urllib.request.urlopen(url, context=ctx, timeout=2) as resp:
                body = resp.read().decode(errors="replace")
                return resp.status == 200 and (name != "etcd" or '"health":"true"' in body)
        except (urllib.error.URLError, OSError, ssl.SSLError):
            return False

    def wait_ready(
        self, name: str, *, timeout: float = 60, probe: Callable[[], bool] | None = None
    ) -> None:
        check = probe or (lambda: self.ready(name))
        self.processes.wait_until(name, check, timeout=timeout)

    # -- API helpers ---------------------------------------------------------------------------

    def issue_client_kubeconfig(self, path: Path, *, user: str, groups: Sequence[str] = ()) -> Path:
        """A kubeconfig for `user` (client cert from our CA): e.g. the webhook's own identity."""
        return pki.issue_client_kubeconfig(
            self.paths.pki, path, server=self.server, user=user, groups=groups
        )

    def api_client(self) -> Any:
        self._check_route()
        return fixtures.new_api_client(self.kubeconfig)

    def apply_fixtures(self, nodes: Sequence[FakeNode] | None = None) -> list[FakeNode]:
        with self.api_client() as api:
            return fixtures.apply_cluster_fixtures(api, nodes=nodes)

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        self._check_route()
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
