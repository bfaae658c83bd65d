"""Our webhook on a local control plane: serve `dra-webhook` on loopback, register it, stop it.

It runs as the ServiceAccount of manifests/base/rbac.yaml (a client certificate for that user),
with the shipped ClusterRole, and with `--client-ca`: only the API server's admission client
certificate gets past the TLS handshake.  The registration is the shipped
MutatingWebhookConfiguration with a loopback URL (see `registration_from_manifests`).
"""

from __future__ import annotations

import base64
import copy
import json
import ssl
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml

from dracore.policy import Policy
from hack.controlplane import ControlPlane
from hack.pki import ADMISSION_CLIENT_NAME
from hack.procs import ROOT, ClusterError, free_ports
from webhook.ops import certs

# The webhook's identity: the ServiceAccount that manifests/base/rbac.yaml binds.
WEBHOOK_USER = "system:serviceaccount:kubectl-dra:kubectl-dra-webhook"
WEBHOOK_GROUPS = ("system:serviceaccounts", "system:serviceaccounts:kubectl-dra")
MANIFESTS_BASE = ROOT / "manifests" / "base"
# Which webhook instance (policy) serves a namespace; see `start`.
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


def start(
    cp: ControlPlane,
    name: str = "default",
    *,
    policy: Path | None = None,
    namespace_selector: dict[str, Any] | None = None,
    failure_policy: str = "Fail",
    out: TextIO = sys.stderr,
) -> WebhookInfo:
    """Serve `dra-webhook` on loopback over TLS and register it for legacy-GPU pods.

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
    stop(cp, name, quiet=True)
    wdir = cp.paths.webhook(name)
    cert_dir = wdir / "certs"
    pki = cp.paths.pki
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
    cp.issue_client_kubeconfig(kubeconfig, user=WEBHOOK_USER, groups=WEBHOOK_GROUPS)
    cp.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(webhook_rbac()))
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
    cp.spawn(pid_name, argv)
    url = f"https://127.0.0.1:{port}"
    # Readiness over a TLS connection that presents the API server's client certificate.
    cp.wait_ready(pid_name, timeout=90, probe=lambda: https_ok(cp, f"{url}/readyz"))
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
    register(cp, name)
    info = WebhookInfo(
        name=name, port=port, config_name=config["metadata"]["name"], pid_name=pid_name
    )
    (wdir / "info.json").write_text(json.dumps(info.__dict__) + "\n")
    print(f"webhook {name} serving on {url} (policy: {policy or 'built-in default'})", file=out)
    return info


def register(cp: ControlPlane, name: str = "default") -> None:
    """(Re-)create the MutatingWebhookConfiguration of a started webhook instance."""
    cp.kubectl("apply", "-f", str(cp.paths.webhook(name) / "registration.yaml"))


def deregister(cp: ControlPlane, name: str = "default") -> None:
    """Delete the MutatingWebhookConfiguration of webhook instance `name`, if there is one."""
    cp.kubectl(
        "delete", "mutatingwebhookconfiguration", f"kubectl-dra-{name}", "--ignore-not-found"
    )


def stop(
    cp: ControlPlane, name: str = "default", *, unregister: bool = True, quiet: bool = False
) -> None:
    """Stop webhook `name`; with `unregister`, also delete its MutatingWebhookConfiguration."""
    cp.stop(f"webhook-{name}", quiet=quiet, out=sys.stderr)
    if unregister and cp.state.get("ports") and cp.ready("kube-apiserver"):
        deregister(cp, name)


def https_ok(cp: ControlPlane, url: str) -> bool:
    """GET `url` presenting the API server's admission client certificate; True on 200."""
    context: ssl.SSLContext = cp.ssl_context(client=False)
    pki = cp.paths.pki
    if (pki / "admission-client.crt").is_file():
        context.load_cert_chain(pki / "admission-client.crt", pki / "admission-client.key")
    try:
        with urllib.request.urlopen(url, context=context, timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError, ssl.SSLError):
        return False
