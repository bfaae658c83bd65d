"""The Helm chart (charts/kubectl-dra) with the real helm, kubectl and promtool.

- with default values (and namespace.create=true) it renders the objects of `kubectl kustomize
  manifests/`, apart from Helm's own labels and the certificate hook;
- `helm lint` passes with every option on; bad values fail with a one-line message;
- `helm install --dry-run=server` against the local control plane;
- the hook Job's script issues the Secret once and sets the caBundle, on the real API server;
- `promtool check rules` accepts the alert rules.

helm and promtool are built from the Go module proxy by hack/go_tools.py (`make tools-build`).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from hack import go_tools, k8s_build
from tests.e2e.e2e_support import ROOT, E2ECluster

pytestmark = pytest.mark.e2e

CHART = ROOT / "charts" / "kubectl-dra"
HELM_LABELS = ("app.kubernetes.io/managed-by", "app.kubernetes.io/instance", "helm.sh/chart")


def tool(name: str) -> str:
    path = go_tools.tool_path(name)
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make tools-build` (hack/go_tools.py) first")
    return str(path)


def run(
    *cmd: str, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    return proc


def helm_template(*values: str, namespace: str = "kubectl-dra") -> list[dict[str, Any]]:
    args = [
        tool("helm"),
        "template",
        "kubectl-dra",
        str(CHART),
        "-n",
        namespace,
        "--kube-version",
        "1.37.2",
    ]
    for value in values:
        args += ["--set", value]
    return [d for d in yaml.safe_load_all(run(*args).stdout) if d]


def normalised(doc: dict[str, Any]) -> dict[str, Any]:
    """Without Helm's labels; the policy ConfigMap's YAML parsed (comments differ)."""
    doc = json.loads(json.dumps(doc))
    labels = doc["metadata"].get("labels") or {}
    for key in HELM_LABELS:
        labels.pop(key, None)
    if doc["kind"] == "ConfigMap" and "policy.yaml" in doc.get("data", {}):
        doc["data"]["policy.yaml"] = yaml.safe_load(doc["data"]["policy.yaml"])
    for hook in doc.get("webhooks") or []:
        # kustomize re-emits the folded CEL with other line breaks; CEL ignores whitespace.
        for condition in hook.get("matchConditions") or []:
            condition["expression"] = " ".join(condition["expression"].split())
    return doc


def is_hook(doc: dict[str, Any]) -> bool:
    return "helm.sh/hook" in (doc["metadata"].get("annotations") or {})


def test_default_values_render_the_objects_of_the_kustomize_base() -> None:
    kubectl = str(k8s_build.bin_dir() / "kubectl")
    kustomized = [
        d
        for d in yaml.safe_load_all(run(kubectl, "kustomize", str(ROOT / "manifests")).stdout)
        if d
    ]
    chart = helm_template("namespace.create=true")

    def key(d: dict[str, Any]) -> tuple[str, str]:
        return d["kind"], d["metadata"]["name"]

    expected = {key(d): normalised(d) for d in kustomized}
    rendered = {key(d): normalised(d) for d in chart if not is_hook(d)}
    assert sorted(rendered) == sorted(expected)
    for k, doc in expected.items():
        assert rendered[k] == doc, k
    hooks = sorted(key(d) for d in chart if is_hook(d))
    assert ("Job", "kubectl-dra-certs") in hooks


def test_lint_with_every_option_on() -> None:
    for mode in ("selfSigned", "certManager", "secret"):
        run(
            tool("helm"), "lint", str(CHART), "--strict", "--kube-version", "1.37.2", "--set",
            f"certificates.mode={mode},certificates.caBundle=Zm9v,clientCA.enabled=true,"
            "metrics.serviceMonitor.enabled=true,metrics.prometheusRule.enabled=true,"
            "metrics.dashboard.enabled=true,namespace.create=true",
        )  # fmt: skip


def test_values_reach_the_objects() -> None:
    docs = helm_template(
        "replicaCount=3", "image.tag=9.9.9", "webhook.failurePolicy=Ignore", "clientCA.enabled=true",
        "certificates.mode=certManager", "policy.spec.mode=Audit", "metrics.prometheusRule.enabled=true",
        namespace="gpu-system",
    )  # fmt: skip
    objects = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    deployment = objects[("Deployment", "kubectl-dra-webhook")]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert deployment["spec"]["replicas"] == 3 and container["image"] == "kubectl-dra/webhook:9.9.9"
    assert "--client-ca=/etc/kubectl-dra/client-ca/ca.crt" in container["args"]
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["client-ca"]["configMap"]["name"] == "kubectl-dra-client-ca"
    hook = objects[("MutatingWebhookConfiguration", "kubectl-dra")]
    assert hook["metadata"]["annotations"] == {
        "cert-manager.io/inject-ca-from": "gpu-system/kubectl-dra-webhook"
    }
    webhook = hook["webhooks"][0]
    assert (
        webhook["failurePolicy"] == "Ignore"
        and webhook["clientConfig"]["service"]["namespace"] == "gpu-system"
    )
    assert webhook["namespaceSelector"]["matchExpressions"][0]["values"] == [
        "gpu-system",
        "kube-system",
    ]
    check = objects[("ValidatingWebhookConfiguration", "kubectl-dra-policy")]
    assert check["metadata"]["annotations"] == hook["metadata"]["annotations"]
    (policy_hook,) = check["webhooks"]
    assert policy_hook["clientConfig"]["service"]["namespace"] == "gpu-system"
    assert policy_hook["namespaceSelector"]["matchExpressions"][0]["values"] == ["gpu-system"]
    assert ("Certificate", "kubectl-dra-webhook") in objects and (
        "Job",
        "kubectl-dra-certs",
    ) not in objects
    policy = yaml.safe_load(objects[("ConfigMap", "kubectl-dra-policy")]["data"]["policy.yaml"])
    assert policy["spec"]["mode"] == "Audit"
    rules = objects[("PrometheusRule", "kubectl-dra-webhook")]["spec"]
    assert rules == yaml.safe_load((CHART / "files" / "prometheus-rules.yaml").read_text())


def test_policy_validation_can_be_turned_off_with_its_hook_rights() -> None:
    def rendered(enabled: str) -> tuple[set[str], set[str], set[str]]:
        docs = {(d["kind"], d["metadata"]["name"]): d for d in helm_template(
            f"policyValidation.enabled={enabled}"
        )}  # fmt: skip
        job = docs["Job", "kubectl-dra-certs"]["spec"]["template"]["spec"]["containers"][0]
        rules = docs["ClusterRole", "kubectl-dra:certs"]["rules"]
        return (
            {kind for kind, _ in docs},
            {env["name"] for env in job["env"]},
            {resource for rule in rules for resource in rule["resources"]},
        )

    on, off = rendered("true"), rendered("false")
    assert on[0] - off[0] == {"ValidatingWebhookConfiguration"}
    assert on[1] - off[1] == {"KUBECTL_DRA_POLICY_CHECK_CONFIG"}
    assert on[2] - off[2] == {"validatingwebhookconfigurations"}


def test_scheduling_values_reach_the_pod_template() -> None:
    docs = helm_template(
        "priorityClassName=system-cluster-critical", "nodeSelector.pool=infra",
        "tolerations[0].key=infra,tolerations[0].operator=Exists,tolerations[0].effect=NoSchedule",
        "imagePullSecrets[0].name=regcred", "affinity.nodeAffinity.x=1",
        "podDisruptionBudget.minAvailable=50%",
    )  # fmt: skip
    objects = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    pod = objects[("Deployment", "kubectl-dra-webhook")]["spec"]["template"]["spec"]
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert pod["nodeSelector"] == {"pool": "infra"}
    assert pod["tolerations"] == [{"key": "infra", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    # A given affinity replaces the default spreading rule rather than merging with it.
    assert pod["affinity"] == {"nodeAffinity": {"x": 1}}
    assert objects[("PodDisruptionBudget", "kubectl-dra-webhook")]["spec"]["minAvailable"] == "50%"
    default = helm_template()
    pod = next(d for d in default if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    assert "podAntiAffinity" in pod["affinity"] and "priorityClassName" not in pod
    without_pdb = helm_template("podDisruptionBudget.enabled=false")
    assert not [d for d in without_pdb if d["kind"] == "PodDisruptionBudget"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "certificates.mode=manual",
            "at '/certificates/mode': value must be one of 'selfSigned', 'certManager', 'secret'",
        ),
        (
            "certificates.mode=secret",
            "certificates.caBundle: required with certificates.mode=secret",
        ),
        (
            "webhook.failurePolicy=Never",
            "at '/webhook/failurePolicy': value must be one of 'Fail', 'Ignore'",
        ),
        ("replicaCount=two", "at '/replicaCount': got string, want integer"),
        ("webhook.timeoutSeconds=40", "at '/webhook/timeoutSeconds': maximum: got 40, want 30"),
        ("replicas=3", "additional properties 'replicas' not allowed"),
        ("podDisruptionBudget.minAvailable=half", "at '/podDisruptionBudget/minAvailable'"),
        ("imagePullSecrets[0].nam=x", "at '/imagePullSecrets/0'"),
    ],
)
def test_bad_values_fail_with_one_line(value: str, message: str) -> None:
    proc = run(
        tool("helm"),
        "template",
        str(CHART),
        "--kube-version",
        "1.37.2",
        "--set",
        value,
        check=False,
    )
    assert proc.returncode != 0 and message in proc.stderr


def test_promtool_accepts_the_alert_rules() -> None:
    proc = run(tool("promtool"), "check", "rules", str(CHART / "files" / "prometheus-rules.yaml"))
    assert "SUCCESS: 5 rules found" in proc.stdout


def test_server_dry_run_install(k8s: E2ECluster, namespace: str) -> None:
    # The e2e cluster already runs the webhook installed from manifests/base, so the shipped
    # ClusterRole exists without Helm's ownership labels, as on a cluster moving from the
    # kustomize install to the chart; --take-ownership is how such a move adopts it.
    proc = run(
        tool("helm"), "install", "kubectl-dra", str(CHART), "-n", namespace, "--dry-run=server",
        "--take-ownership", "--kubeconfig", str(k8s.kubeconfig),
        "--set", "metrics.dashboard.enabled=true",
    )  # fmt: skip
    assert "STATUS: pending-install" in proc.stdout
    kinds = {d["kind"] for d in yaml.safe_load_all(proc.stdout.split("MANIFEST:", 1)[1]) if d}
    assert {
        "Deployment",
        "MutatingWebhookConfiguration",
        "ConfigMap",
        "PodDisruptionBudget",
    } <= kinds


def test_the_certificate_hook_issues_once_and_sets_the_ca_bundle(k8s: E2ECluster) -> None:
    name = f"audit-chart-{uuid.uuid4().hex[:5]}"
    namespace = name  # short: the certificate's common name is the Service's DNS name
    k8s.core.create_namespace({"metadata": {"name": namespace}})
    rendered = {d["kind"]: d for d in helm_template(namespace=namespace)}
    config, check = (
        rendered["MutatingWebhookConfiguration"],
        rendered["ValidatingWebhookConfiguration"],
    )
    for inert in (config, check):
        inert["metadata"] = {"name": name}
        hook = inert["webhooks"][0]
        hook["failurePolicy"] = "Ignore"  # inert: no namespace carries this label
        hook["namespaceSelector"] = {"matchLabels": {name: "never"}}
    from kubernetes import client

    admission = client.AdmissionregistrationV1Api(k8s.api)
    admission.create_mutating_webhook_configuration(config)
    admission.create_validating_webhook_configuration(check)
    env = {
        **os.environ,
        "KUBECONFIG": str(k8s.kubeconfig),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "KUBECTL_DRA_NAMESPACE": namespace,
        "KUBECTL_DRA_SECRET": "kubectl-dra-webhook-tls",
        "KUBECTL_DRA_SERVICE": "kubectl-dra-webhook",
        "KUBECTL_DRA_WEBHOOK_CONFIG": name,
        "KUBECTL_DRA_POLICY_CHECK_CONFIG": name,
    }
    script = str(CHART / "files" / "selfsigned-certs.py")
    try:
        run(sys.executable, script, env=env)
        secret = k8s.core.read_namespaced_secret("kubectl-dra-webhook-tls", namespace)
        assert secret.type == "kubernetes.io/tls" and set(secret.data) == {
            "tls.crt",
            "tls.key",
            "ca.crt",
        }
        bundle = (
            admission.read_mutating_webhook_configuration(name).webhooks[0].client_config.ca_bundle
        )
        assert bundle == secret.data["ca.crt"]
        checked = admission.read_validating_webhook_configuration(name).webhooks[0]
        assert checked.client_config.ca_bundle == bundle
        assert b"BEGIN CERTIFICATE" in base64.b64decode(bundle)

        run(sys.executable, script, env=env)  # an upgrade: the Secret and its CA are kept
        again = k8s.core.read_namespaced_secret("kubectl-dra-webhook-tls", namespace)
        assert again.data == secret.data
    finally:
        admission.delete_mutating_webhook_configuration(name)
        admission.delete_validating_webhook_configuration(name)
        k8s.delete_namespace(namespace)
