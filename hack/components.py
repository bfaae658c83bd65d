"""How each control-plane component is started: etcd, kube-apiserver, kcm, kube-scheduler.

Pure command lines (plus two `--help` probes of the built release), so a flag is read in one
place.  The node lifecycle controller is left out: the simulated GPU nodes send no heartbeats,
and it would mark them NotReady after ~40 s, taint them and evict.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping
from pathlib import Path

from hack.node_net import HOST_ADDRESS, SERVICE_RANGE
from hack.procs import Paths

COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
SERVICE_CIDR = SERVICE_RANGE
# Feature gates we want on when the built release still has them as a (non-GA) gate:
# DRAExtendedResource is alpha in 1.34 (KEP-5004); later it is on or locked.
WANTED_GATES = ("DRAExtendedResource",)


def _help_text(binary: Path) -> str:
    return subprocess.run(
        [str(binary), "--help"], capture_output=True, text=True, check=False
    ).stdout


def feature_gates(bin_dir: Path) -> str:
    """`--feature-gates` value: WANTED_GATES that this release still lists as alpha/beta."""
    help_text = _help_text(bin_dir / "kube-apiserver")
    enabled = []
    for gate in WANTED_GATES:
        # 1.37 prints "kube:Name=true|false (BETA - ...)"; older releases have no prefix.
        if re.search(rf"^\s*(?:kube:)?{gate}=true\|false \((ALPHA|BETA)", help_text, re.M):
            enabled.append(f"{gate}=true")
    return ",".join(enabled)


def controllers_flag(bin_dir: Path) -> str:
    """Every default controller but node lifecycle (its name changed across releases)."""
    help_text = _help_text(bin_dir / "kube-controller-manager")
    name = (
        "node-lifecycle-controller" if "node-lifecycle-controller" in help_text else "nodelifecycle"
    )
    return f"--controllers=*,-{name}"


def health_urls(ports: Mapping[str, int]) -> dict[str, str]:
    return {
        "etcd": f"https://127.0.0.1:{ports['etcd']}/health",
        "kube-apiserver": f"https://{HOST_ADDRESS}:{ports['apiserver']}/readyz",
        "kube-controller-manager": f"https://127.0.0.1:{ports['controllerManager']}/healthz",
        "kube-scheduler": f"https://127.0.0.1:{ports['scheduler']}/readyz",
    }


def etcd_argv(bin_dir: Path, paths: Paths, ports: Mapping[str, int]) -> list[str]:
    p, pki = ports, paths.pki
    return [
        str(bin_dir / "etcd"),
        "--name=kubectl-dra",
        f"--data-dir={paths.etcd_data}",
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
    ]


def apiserver_argv(bin_dir: Path, paths: Paths, ports: Mapping[str, int], gates: str) -> list[str]:
    p, pki = ports, paths.pki
    argv = [
        str(bin_dir / "kube-apiserver"),
        f"--etcd-servers=https://127.0.0.1:{p['etcd']}",
        f"--etcd-cafile={pki / 'ca.crt'}",
        f"--etcd-certfile={pki / 'etcd-client.crt'}",
        f"--etcd-keyfile={pki / 'etcd-client.key'}",
        # Not loopback: pods reach it through the `kubernetes` Service, whose endpoint this
        # address becomes (hack/node_net.py; a dummy link of the host).
        f"--bind-address={HOST_ADDRESS}",
        f"--advertise-address={HOST_ADDRESS}",
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
        # Webhooks behind a Service are called on a ready endpoint's pod IP: the host has no
        # route to ClusterIPs (kube-proxy runs only inside the nodes' namespaces).
        "--enable-aggregator-routing=true",
        "--allow-privileged=true",
        f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
        f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
        f"--kubelet-certificate-authority={pki / 'ca.crt'}",
        # A real node's InternalIP is its address in its own network namespace.
        "--kubelet-preferred-address-types=InternalIP,Hostname",
        "--profiling=false",
        "--v=1",
    ]
    return _with_gates(argv, gates)


def controller_manager_argv(
    bin_dir: Path, paths: Paths, ports: Mapping[str, int], gates: str
) -> list[str]:
    pki = paths.pki
    argv = [
        *_secure_component(bin_dir / "kube-controller-manager", paths, "controller-manager"),
        f"--secure-port={ports['controllerManager']}",
        f"--service-account-private-key-file={pki / 'service-account.key'}",
        f"--root-ca-file={pki / 'ca.crt'}",
        f"--cluster-signing-cert-file={pki / 'ca.crt'}",
        f"--cluster-signing-key-file={pki / 'ca.key'}",
        "--use-service-account-credentials=true",
        controllers_flag(bin_dir),
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--leader-elect=false",
        "--v=1",
    ]
    return _with_gates(argv, gates)


def scheduler_argv(bin_dir: Path, paths: Paths, ports: Mapping[str, int], gates: str) -> list[str]:
    argv = [
        *_secure_component(bin_dir / "kube-scheduler", paths, "scheduler"),
        f"--secure-port={ports['scheduler']}",
        "--leader-elect=false",
        "--v=1",
    ]
    return _with_gates(argv, gates)


def _secure_component(binary: Path, paths: Paths, name: str) -> list[str]:
    """A component with its own kubeconfig (`<name>.kubeconfig`) and serving certificate."""
    kubeconfig, pki = paths.root / f"{name}.kubeconfig", paths.pki
    return [
        str(binary),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--tls-cert-file={pki / f'{name}.crt'}",
        f"--tls-private-key-file={pki / f'{name}.key'}",
    ]


def _with_gates(argv: list[str], gates: str) -> list[str]:
    return [*argv, f"--feature-gates={gates}"] if gates else argv
