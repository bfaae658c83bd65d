"""manifests/ against the real API server: server-side dry run, the ServiceAccount's RBAC, and the
MutatingWebhookConfiguration from manifests/ calling our gunicorn server.

The webhook configuration is the committed one with two test-only changes: `clientConfig` points
at the gunicorn server on loopback (url + caBundle instead of the in-cluster Service), and its
namespaceSelector also requires this test's namespace label, so pods of other tests running in
the same session never reach it. Everything else (rules, matchConditions, failurePolicy,
sideEffects, ...) is what users deploy. The server runs with a client certificate for the
ServiceAccount's user name, so it has exactly the RBAC in manifests/base/rbac.yaml.

Cluster-scoped objects this module creates (the webhook configuration, namespace kubectl-dra)
are deleted at the end; the ClusterRole and its binding stay, because hack/webhook_lifecycle.py registers
every e2e webhook with exactly these objects.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from hack.pki import ADMISSION_CLIENT_NAME
from tests.builders import make_review
from tests.e2e.e2e_support import (
    POLICY_LABEL,
    REWRITTEN,
    ROOT,
    E2ECluster,
    legacy_pod,
)
from webhook.ops import certs

pytestmark = pytest.mark.e2e

MANIFESTS = ROOT / "manifests"
NAMESPACE = "kubectl-dra"
SA = "kubectl-dra-webhook"
SA_USER = f"system:serviceaccount:{NAMESPACE}:{SA}"
SA_GROUPS = (
    "system:serviceaccounts",
    f"system:serviceaccounts:{NAMESPACE}",
    "system:authenticated",
)
CONFIG_NAME = "kubectl-dra"
TEST_LABEL = "kubectl-dra.io/e2e-manifests"


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@pytest.fixture(scope="module")
def installed(k8s: E2ECluster) -> Iterator[None]:
    """Namespace kubectl-dra and the RBAC from manifests/, really applied; removed afterwards."""
    k8s.kubectl("apply", "-f", str(MANIFESTS / "base" / "namespace.yaml"))
    k8s.kubectl("apply", "-f", str(MANIFESTS / "base" / "rbac.yaml"))
    try:
        yield
    finally:
        for doc in reversed(_docs(MANIFESTS / "base" / "rbac.yaml")):
            if doc["kind"] in ("ClusterRole", "ClusterRoleBinding"):
                continue  # hack/webhook_lifecycle.py's webhooks run with these same objects: keep them
            k8s.kubectl(
                "delete", doc["kind"], doc["metadata"]["name"], "-n", NAMESPACE,
                "--ignore-not-found", "--wait=false", check=False,
            )  # fmt: skip
        k8s.kubectl(
            "delete", "mutatingwebhookconfiguration", CONFIG_NAME, "--ignore-not-found",
            check=False,
        )  # fmt: skip
        k8s.delete_namespace(NAMESPACE)


def test_manifests_pass_a_server_side_dry_run(k8s: E2ECluster, installed: None) -> None:
    """Every object of `kubectl apply -k manifests/` passes the API server's validation and
    admission. (The namespace exists already: a dry run cannot create it, and namespaced
    objects are refused in a namespace that does not exist.)"""
    proc = k8s.kubectl("apply", "--dry-run=server", "-k", str(MANIFESTS), check=False)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    print("\n" + "\n".join(lines))
    assert len(lines) == 10
    assert all("(server dry run)" in line for line in lines)
    for kind in (
        "deployment.apps/kubectl-dra-webhook",
        "mutatingwebhookconfiguration",
        "validatingwebhookconfiguration",
    ):
        assert any(kind in line for line in lines)


# (verb, resource, namespace or "" for cluster scope, expected)
NEEDED = [
    ("create", "resourceclaimtemplates.resource.k8s.io", "team-a", True),
    ("get", "resourceclaimtemplates.resource.k8s.io", "team-b", True),
    ("create", "resourceclaims.resource.k8s.io", "team-a", True),
    ("get", "resourceclaims.resource.k8s.io", "team-b", True),
    ("get", "namespaces", "", True),
    ("list", "deviceclasses.resource.k8s.io", "", True),
]
FORBIDDEN = [
    ("list", "resourceclaimtemplates.resource.k8s.io", "team-a", False),
    ("watch", "resourceclaims.resource.k8s.io", "team-a", False),
    ("delete", "resourceclaimtemplates.resource.k8s.io", "team-a", False),
    ("update", "resourceclaims.resource.k8s.io", "team-a", False),
    ("patch", "resourceclaims.resource.k8s.io", "team-a", False),
    ("delete", "resourceclaims.resource.k8s.io", "team-a", False),
    ("list", "namespaces", "", False),
    ("update", "namespaces", "", False),
    ("get", "pods", "team-a", False),
    ("create", "pods", "team-a", False),
    ("get", "secrets", NAMESPACE, False),
    ("list", "secrets", "kube-system", False),
    ("get", "configmaps", NAMESPACE, False),
    ("update", "mutatingwebhookconfigurations.admissionregistration.k8s.io", "", False),
    ("create", "deviceclasses.resource.k8s.io", "", False),
    ("watch", "deviceclasses.resource.k8s.io", "", False),
    ("list", "resourceslices.resource.k8s.io", "", False),
    ("get", "nodes", "", False),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io", "", False),
    ("impersonate", "users", "", False),
    ("*", "*", "", False),
]


def _can_i(k8s: E2ECluster, verb: str, resource: str, namespace: str) -> bool:
    args = ["auth", "can-i", verb, resource, f"--as={SA_USER}"]
    args += [f"--as-group={g}" for g in SA_GROUPS]
    args += ["-n", namespace] if namespace else []
    proc = k8s.kubectl(*args, check=False)
    answer = proc.stdout.strip()
    assert answer in ("yes", "no"), f"kubectl {' '.join(args)}: {proc.stdout}{proc.stderr}"
    return answer == "yes"


def test_service_account_can_do_what_the_webhook_needs_and_nothing_listed_as_forbidden(
    k8s: E2ECluster, installed: None
) -> None:
    rows = []
    wrong = []
    for verb, resource, namespace, expected in NEEDED + FORBIDDEN:
        got = _can_i(k8s, verb, resource, namespace)
        rows.append((verb, resource, namespace or "(cluster)", expected, got))
        if got != expected:
            wrong.append(rows[-1])
    width = max(len(r[1]) for r in rows)
    table = [f"{'VERB':<12} {'RESOURCE':<{width}} {'NAMESPACE':<12} WANT GOT"]
    table += [
        f"{v:<12} {r:<{width}} {n:<12} {'yes' if e else 'no':<4} {'yes' if g else 'no'}"
        for v, r, n, e, g in rows
    ]
    print(f"\nkubectl auth can-i --as={SA_USER}\n" + "\n".join(table))
    assert wrong == []


def _metric(url_get: Any, name: str) -> float:
    text = url_get("/metrics")
    match = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


@pytest.fixture
def gunicorn_webhook(
    k8s: E2ECluster, installed: None, tmp_path: Path
) -> Iterator[tuple[str, Any, Path]]:
    """`dra-webhook serve` (gunicorn) on loopback as the ServiceAccount's user; (url, get, log)."""
    pki = k8s.cluster.paths.pki
    ca = certs.load_key_pair(pki / "ca.crt", pki / "ca.key")
    leaf = certs.issue_cert(ca, "kubectl-dra-webhook", ip_addresses=["127.0.0.1"])
    cert_dir = tmp_path / "tls"
    certs.write_tls_dir(cert_dir, leaf=leaf, ca=ca)
    kubeconfig = k8s.cluster.issue_client_kubeconfig(
        tmp_path / "kubeconfig", user=SA_USER, groups=SA_GROUPS[:2]
    )
    log = tmp_path / "webhook.log"
    argv = [
        sys.executable, "-m", "webhook", "serve", f"--cert-dir={cert_dir}",
        "--host=127.0.0.1", "--port=0", f"--kubeconfig={kubeconfig}",
        f"--metrics-dir={tmp_path / 'metrics'}", "--workers=2",
        f"--client-ca={pki / 'admission-client-ca.crt'}",
        f"--client-name={ADMISSION_CLIENT_NAME}",
    ]  # fmt: skip
    with log.open("wb") as sink:
        proc = subprocess.Popen(argv, stdout=sink, stderr=sink, cwd=ROOT)
    try:

        def port() -> int | None:
            if proc.poll() is not None:
                raise AssertionError(f"webhook exited {proc.returncode}:\n{log.read_text()}")
            match = re.search(r"Listening at: https://127\.0\.0\.1:(\d+)", log.read_text())
            return int(match.group(1)) if match else None

        url = f"https://127.0.0.1:{k8s.wait_for('the webhook to listen', port, timeout=90)}"

        def get(path: str) -> str:
            import ssl
            import urllib.request

            context = ssl.create_default_context(cadata=ca.cert_pem.decode())
            # Only the API server's admission client certificate gets past the handshake.
            context.load_cert_chain(pki / "admission-client.crt", pki / "admission-client.key")
            with urllib.request.urlopen(url + path, context=context, timeout=5) as resp:
                return str(resp.read().decode())

        def ready() -> bool:
            try:
                return '"status":"ok"' in get("/readyz").replace(" ", "")
            except OSError:
                return False

        k8s.wait_for("/readyz", ready, timeout=90)
        yield url, get, log
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def _registered_config(url: str, ca_pem: bytes, namespace: str) -> dict[str, Any]:
    (config,) = _docs(MANIFESTS / "base" / "mutatingwebhookconfiguration.yaml")
    config = copy.deepcopy(config)
    for hook in config["webhooks"]:
        hook["clientConfig"] = {
            "url": f"{url}/mutate",
            "caBundle": base64.b64encode(ca_pem).decode(),
        }
        hook["namespaceSelector"].setdefault("matchLabels", {})[TEST_LABEL] = namespace
    return config


def test_webhook_configuration_from_manifests_makes_the_api_server_call_gunicorn(
    k8s: E2ECluster, namespace: str, gunicorn_webhook: tuple[str, Any, Path]
) -> None:
    url, get, log = gunicorn_webhook
    # Only this webhook: no instance of the session's WebhookPool serves this namespace.
    k8s.core.patch_namespace(
        namespace, {"metadata": {"labels": {TEST_LABEL: namespace, POLICY_LABEL: "none"}}}
    )
    ca_pem = (k8s.cluster.paths.pki / "ca.crt").read_bytes()
    config = _registered_config(url, ca_pem, namespace)
    k8s.kubectl("apply", "-f", "-", input=json.dumps(config))
    try:
        probe = json.dumps(legacy_pod("probe"))

        def rewritten_on_dry_run() -> dict[str, Any] | None:
            proc = k8s.kubectl(
                "create", "--dry-run=server", "-o", "json", "-n", namespace, "-f", "-",
                check=False, input=probe,
            )  # fmt: skip
            if proc.returncode != 0:
                return None
            pod: dict[str, Any] = json.loads(proc.stdout)
            return pod if REWRITTEN in (pod["metadata"].get("annotations") or {}) else None

        dry = k8s.wait_for("a dry run rewritten by our server", rewritten_on_dry_run, timeout=30)
        assert dry["spec"]["resourceClaims"][0]["resourceClaimTemplateName"]
        assert k8s.list_templates(namespace) == []  # NoneOnDryRun: nothing created on dry runs

        sent = _metric(get, 'dra_webhook_reviews_total{operation="CREATE",outcome="patched"}')
        k8s.apply(json.dumps(legacy_pod("legacy")), namespace=namespace)
        pod = k8s.get_pod(namespace, "legacy")
        limits = pod["spec"]["containers"][0]["resources"].get("limits") or {}
        assert "nvidia.com/gpu" not in limits
        (ref,) = pod["spec"]["resourceClaims"]
        templates = [t["metadata"]["name"] for t in k8s.list_templates(namespace)]
        assert templates == [ref["resourceClaimTemplateName"]]  # created as the ServiceAccount
        assert _metric(get, "dra_webhook_templates_created_total") >= 1

        # matchConditions: a CPU-only pod never reaches the server.
        cpu = legacy_pod("cpu")
        cpu["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "100m"}}
        after_gpu = _metric(get, 'dra_webhook_reviews_total{operation="CREATE",outcome="patched"}')
        unchanged = _metric(
            get, 'dra_webhook_reviews_total{operation="CREATE",outcome="unchanged"}'
        )
        k8s.apply(json.dumps(cpu), namespace=namespace)
        time.sleep(0.5)
        assert after_gpu == sent + 1
        assert (
            _metric(get, 'dra_webhook_reviews_total{operation="CREATE",outcome="unchanged"}')
            == unchanged
        )
        entries = [
            json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")
        ]
        decided = [e for e in entries if e.get("namespace") == namespace]
        assert {e["decision"] for e in decided} == {"patched"}
        assert {e["pod"] for e in decided} >= {"probe", "legacy"}
    finally:
        k8s.kubectl(
            "delete", "mutatingwebhookconfiguration", CONFIG_NAME, "--ignore-not-found",
            check=False,
        )  # fmt: skip


def test_certs_inject_patches_the_ca_bundle_through_the_api(
    k8s: E2ECluster, tmp_path: Path
) -> None:
    """`dra-webhook certs inject --name` on the committed configuration (renamed, and scoped to
    no namespace at all so that it never intercepts a pod)."""
    (config,) = _docs(MANIFESTS / "base" / "mutatingwebhookconfiguration.yaml")
    name = "kubectl-dra-inject-e2e"
    config["metadata"]["name"] = name
    config["webhooks"][0]["namespaceSelector"]["matchLabels"] = {TEST_LABEL: "no-such-namespace"}
    out = tmp_path / "certs"
    certs_argv = [sys.executable, "-m", "webhook", "certs"]
    generate = subprocess.run(
        [*certs_argv, "generate", "--service=kubectl-dra-webhook", "--namespace=kubectl-dra",
         f"--out={out}"],
        capture_output=True, text=True, check=False, cwd=ROOT,
    )  # fmt: skip
    assert generate.returncode == 0, generate.stderr
    k8s.kubectl("apply", "-f", "-", input=json.dumps(config))
    try:
        inject = subprocess.run(
            [*certs_argv, "inject", f"--dir={out}", f"--name={name}",
             f"--kubeconfig={k8s.kubeconfig}"],
            capture_output=True, text=True, check=False, cwd=ROOT,
        )  # fmt: skip
        assert inject.returncode == 0, inject.stderr
        assert "caBundle set on 1 webhook(s)" in inject.stderr
        live = json.loads(
            k8s.kubectl("get", "mutatingwebhookconfiguration", name, "-o", "json").stdout
        )
        bundle = live["webhooks"][0]["clientConfig"]["caBundle"]
        assert base64.b64decode(bundle) == (out / "ca.crt").read_bytes()
        missing = subprocess.run(
            [*certs_argv, "inject", f"--dir={out}", "--name=not-there",
             f"--kubeconfig={k8s.kubeconfig}"],
            capture_output=True, text=True, check=False, cwd=ROOT,
        )  # fmt: skip
        assert missing.returncode == 1
        assert "cannot read MutatingWebhookConfiguration not-there" in missing.stderr
        assert "Traceback" not in missing.stderr
    finally:
        k8s.kubectl(
            "delete", "mutatingwebhookconfiguration", name, "--ignore-not-found", check=False
        )


def test_only_the_api_server_gets_the_webhook_to_act(
    k8s: E2ECluster, namespace: str, gunicorn_webhook: tuple[str, Any, Path]
) -> None:
    """The webhook runs with --client-ca: the API server, presenting its admission client
    certificate (AdmissionConfiguration kubeConfigFile), gets pods rewritten; a forged review
    sent straight to the webhook by anyone else (no certificate, or a valid certificate of the
    cluster's own CA, like the admin's) is refused before anything is created."""
    url, _get, _log = gunicorn_webhook
    port = int(url.rsplit(":", 1)[1])
    k8s.core.patch_namespace(
        namespace, {"metadata": {"labels": {TEST_LABEL: namespace, POLICY_LABEL: "none"}}}
    )
    pki = k8s.cluster.paths.pki
    config = _registered_config(url, (pki / "ca.crt").read_bytes(), namespace)
    k8s.kubectl("apply", "-f", "-", input=json.dumps(config))
    try:
        forged = json.dumps(make_review(legacy_pod("forged"), namespace=namespace)).encode()
        request = (
            "POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(forged)}\r\nConnection: close\r\n\r\n"
        ).encode() + forged

        def answer(pair: tuple[Path, Path] | None) -> bytes:
            context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
            if pair is not None:
                context.load_cert_chain(*pair)
            data = b""
            try:
                with (
                    socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
                    context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
                ):
                    tls.sendall(request)
                    while chunk := tls.recv(65536):
                        data += chunk
            except (ssl.SSLError, ConnectionError):
                pass
            return data

        assert answer(None) == b""
        assert answer((pki / "admin.crt", pki / "admin.key")) == b""
        assert k8s.list_templates(namespace) == []
        api_server = (pki / "admission-client.crt", pki / "admission-client.key")
        assert answer(api_server).startswith(b"HTTP/1.1 200")  # the same bytes, the right caller

        # And through the API server, which presents that certificate itself:
        k8s.apply(json.dumps(legacy_pod("real")), namespace=namespace)
        pod = k8s.get_pod(namespace, "real")
        assert REWRITTEN in (pod["metadata"].get("annotations") or {})
        assert len(k8s.list_templates(namespace)) == 1
    finally:
        k8s.kubectl(
            "delete", "mutatingwebhookconfiguration", CONFIG_NAME, "--ignore-not-found",
            check=False,
        )  # fmt: skip
