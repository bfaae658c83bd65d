"""The certificates and kubeconfigs of a local control plane, from `webhook.ops.certs`.

One CA; etcd and the API server serve TLS; each component authenticates with its own client
certificate; the admin user is in `system:masters`.  The API server's admission client has a CA
of its own, so a webhook that trusts only that CA accepts no other user of the cluster.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from hack.node_net import HOST_ADDRESS
from hack.procs import Paths
from webhook.ops import certs

ADMIN_USER = "kubectl-dra-admin"
# The subject the API server's admission client certificate carries (pki/admission-client.crt).
ADMISSION_CLIENT_NAME = "kube-apiserver-admission-client"
# `kube-apiserver --kubelet-client-certificate` identity (bound to system:kubelet-api-admin).
APISERVER_KUBELET_USER = "kube-apiserver-kubelet-client"


def kubeconfig_dict(
    *, server: str, ca_pem: bytes, user: str, pair: certs.KeyPair
) -> dict[str, Any]:
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

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


def write_control_plane_pki(paths: Paths, *, server: str) -> None:
    """The CA, every component's certificate and the kubeconfigs of admin, kcm and scheduler."""
    pki = paths.pki
    ca = certs.generate_ca("kubectl-dra-local-ca")
    certs.write_public(pki / "ca.crt", ca.cert_pem)
    certs.write_private(pki / "ca.key", ca.key_pem)
    loopback: dict[str, Any] = {"dns_names": ["localhost"], "ip_addresses": ["127.0.0.1"]}

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
        ip_addresses=["127.0.0.1", HOST_ADDRESS, "10.96.0.1"],
    )
    leaf("controller-manager", "kube-controller-manager", **loopback)
    leaf("scheduler", "kube-scheduler", **loopback)
    # How the API server authenticates to a kubelet (logs, exec); see hack/node.py.
    leaf("apiserver-kubelet-client", APISERVER_KUBELET_USER, server=False, client=True)
    # Service-account tokens: the API server signs with this key, the controller-manager
    # mints controller tokens with it.  The certificate is only a container for the public
    # key (the API server accepts a certificate in --service-account-key-file).
    leaf("service-account", "service-accounts", server=False, client=True)
    write_admission_client(pki)

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
        certs.write_private(paths.root / filename, yaml.safe_dump(cfg).encode())


def write_admission_client(pki: Path) -> None:
    """The client certificate the API server presents to webhooks, from a CA of its own.

    The webhook trusts only that CA (`--client-ca`) and only this name (`--client-name`), so
    no kubeconfig user of the cluster CA can call it. The AdmissionConfiguration's
    kubeConfigFile gives the certificate for every webhook (`*`): ours are the only ones.
    """
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


def issue_client_kubeconfig(
    pki: Path, path: Path, *, server: str, user: str, groups: Sequence[str] = ()
) -> Path:
    """A kubeconfig for `user` with a client certificate from the cluster's CA."""
    ca = certs.load_key_pair(pki / "ca.crt", pki / "ca.key")
    pair = certs.issue_cert(ca, user, organizations=groups, server=False, client=True)
    cfg = kubeconfig_dict(server=server, ca_pem=ca.cert_pem, user=user, pair=pair)
    certs.write_private(path, yaml.safe_dump(cfg).encode())
    return path
