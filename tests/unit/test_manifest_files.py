"""manifests/: the objects `kubectl apply -k manifests/` creates, checked offline.

Schema validation at Kubernetes 1.34 (strict: unknown fields fail), cross-references between the
objects (names, ports, mount paths), the least-privilege RBAC, the webhook's safety settings,
and the policy ConfigMap being exactly the built-in default. tests/e2e/test_manifests.py checks
the same objects against a real API server.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from dracore.policy import Policy
from hack import gen_registration
from tests.builders import assert_valid

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"


def load_kustomization(folder: Path) -> list[dict[str, Any]]:
    """The documents of a kustomization's `resources` (files and folders; no transformers)."""
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    docs: list[dict[str, Any]] = []
    for entry in kustomization["resources"]:
        path = folder / entry
        if path.is_dir():
            docs += load_kustomization(path)
        else:
            docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


@pytest.fixture(scope="module")
def objects() -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in load_kustomization(MANIFESTS)}


def test_every_object_is_valid_at_1_34(objects: dict[tuple[str, str], dict[str, Any]]) -> None:
    assert sorted(kind for kind, _ in objects) == [
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "Deployment",
        "MutatingWebhookConfiguration",
        "Namespace",
        "PodDisruptionBudget",
        "Service",
        "ServiceAccount",
        "ValidatingWebhookConfiguration",
    ]
    assert_valid(*objects.values())


def test_the_policy_configmap_is_the_built_in_default(
    objects: dict[tuple[str, str], dict[str, Any]],
) -> None:
    policy = Policy.from_configmap(objects["ConfigMap", "kubectl-dra-policy"])
    assert dataclasses.replace(policy, digest="builtin") == Policy.default()


def test_rbac_grants_exactly_what_the_webhook_uses(
    objects: dict[tuple[str, str], dict[str, Any]],
) -> None:
    rules = objects["ClusterRole", "kubectl-dra:webhook"]["rules"]
    grants = {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert grants == {
        ("resource.k8s.io", "resourceclaimtemplates", "create"),
        ("resource.k8s.io", "resourceclaimtemplates", "get"),
        ("resource.k8s.io", "resourceclaims", "create"),
        ("resource.k8s.io", "resourceclaims", "get"),
        ("", "namespaces", "get"),
        ("resource.k8s.io", "deviceclasses", "list"),
    }
    binding = objects["ClusterRoleBinding", "kubectl-dra:webhook"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "kubectl-dra-webhook", "namespace": "kubectl-dra"}
    ]
    assert not [k for k in objects if k[0] in ("Role", "RoleBinding")]


def _creates_and_updates_of(resource: str) -> list[dict[str, Any]]:
    """The one rule of both webhook configurations: CREATE and UPDATE of a core resource."""
    return [
        {
            "operations": ["CREATE", "UPDATE"],
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "resources": [resource],
            "scope": "Namespaced",
        }
    ]


def test_webhook_configuration_is_narrow_and_safe(
    objects: dict[tuple[str, str], dict[str, Any]],
) -> None:
    (hook,) = objects["MutatingWebhookConfiguration", "kubectl-dra"]["webhooks"]
    assert hook["rules"] == _creates_and_updates_of("pods")
    assert hook["sideEffects"] == "NoneOnDryRun"
    assert hook["reinvocationPolicy"] == "IfNeeded"
    assert hook["failurePolicy"] == "Fail"
    assert hook["admissionReviewVersions"] == ["v1"]
    assert 1 <= hook["timeoutSeconds"] <= 10
    excluded = next(
        e
        for e in hook["namespaceSelector"]["matchExpressions"]
        if e["key"] == "kubernetes.io/metadata.name"
    )
    assert excluded["operator"] == "NotIn"
    assert {"kube-system", "kubectl-dra"} <= set(excluded["values"])
    conditions = {c["name"]: c["expression"] for c in hook["matchConditions"]}
    assert set(conditions) == {"asks-for-legacy-gpu-resources", "created-or-rewritten"}
    assert "caBundle" not in hook["clientConfig"]  # injected at install time, never committed


def test_the_registration_is_generated_from_the_policy_configmap(
    objects: dict[tuple[str, str], dict[str, Any]],
) -> None:
    """Apart from an injected caBundle, the committed file is `python -m hack.gen_registration`'s
    output for policy-configmap.yaml: editing either alone fails here."""
    committed = copy.deepcopy(objects["MutatingWebhookConfiguration", "kubectl-dra"])
    for hook in committed["webhooks"]:
        hook["clientConfig"].pop("caBundle", None)
    assert committed == gen_registration.generated(MANIFESTS / "base" / "policy-configmap.yaml")


def test_the_pieces_refer_to_each_other(objects: dict[tuple[str, str], dict[str, Any]]) -> None:
    (hook,) = objects["MutatingWebhookConfiguration", "kubectl-dra"]["webhooks"]
    service = objects["Service", "kubectl-dra-webhook"]
    deployment = objects["Deployment", "kubectl-dra-webhook"]
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    target = hook["clientConfig"]["service"]
    assert (target["name"], target["namespace"]) == ("kubectl-dra-webhook", "kubectl-dra")
    assert target["path"] == "/mutate"
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    container_ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports.keys() == {"https", "metrics"}
    assert ports["https"]["port"] == target["port"] == 443
    assert ports["https"]["targetPort"] == "https" and container_ports["https"] == 9443
    assert f"--port={container_ports['https']}" in container["args"]
    # Probes and scrapes: the plain-HTTP listener, never the (maybe client-certificate) one.
    assert ports["metrics"]["targetPort"] == "probes"
    assert f"--probe-port={container_ports['probes']}" in container["args"]
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(container_ports["probes"])
    assert annotations["prometheus.io/scheme"] == "http"
    # The review's deadline follows the registration's timeout.
    assert f"--review-timeout={hook['timeoutSeconds']}" in container["args"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert pod["spec"]["serviceAccountName"] in {n for k, n in objects if k == "ServiceAccount"}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert volumes["policy"]["configMap"]["name"] == "kubectl-dra-policy"
    assert volumes["tls"]["secret"]["secretName"] == "kubectl-dra-webhook-tls"
    assert mounts["/etc/kubectl-dra/tls"] == "tls"
    assert "--cert-dir=/etc/kubectl-dra/tls" in container["args"]
    assert "--policy=/etc/kubectl-dra/policy/policy.yaml" in container["args"]
    assert mounts["/etc/kubectl-dra/policy"] == "policy"
    assert not any("subPath" in m for m in container["volumeMounts"])  # subPath never updates
    assert "--metrics-dir=/tmp/metrics" in container["args"] and mounts["/tmp"] == "tmp"


def test_deployment_is_highly_available_and_locked_down(
    objects: dict[tuple[str, str], dict[str, Any]],
) -> None:
    deployment = objects["Deployment", "kubectl-dra-webhook"]
    spec = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert deployment["spec"]["replicas"] == 2
    pdb = objects["PodDisruptionBudget", "kubectl-dra-webhook"]
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]
    assert spec["affinity"]["podAntiAffinity"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert container["resources"]["requests"].keys() == {"cpu", "memory"}
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = container[probe]["httpGet"]
        assert (get["path"], get["scheme"], get["port"]) == (path, "HTTP", "probes")
    graceful = next(a for a in container["args"] if a.startswith("--graceful-timeout="))
    assert int(graceful.split("=")[1]) + 5 < spec["terminationGracePeriodSeconds"]


def test_cert_manager_overlay_adds_the_certificate_and_the_injector_annotation() -> None:
    overlay = MANIFESTS / "overlays" / "cert-manager"
    kustomization = yaml.safe_load((overlay / "kustomization.yaml").read_text())
    assert "../../base" in kustomization["resources"]
    certificates = [d for d in yaml.safe_load_all((overlay / "certificates.yaml").read_text()) if d]
    serving = next(
        d for d in certificates if d["kind"] == "Certificate" and not d["spec"].get("isCA")
    )
    assert serving["spec"]["secretName"] == "kubectl-dra-webhook-tls"
    assert serving["spec"]["dnsNames"] == [
        "kubectl-dra-webhook",
        "kubectl-dra-webhook.kubectl-dra",
        "kubectl-dra-webhook.kubectl-dra.svc",
        "kubectl-dra-webhook.kubectl-dra.svc.cluster.local",
    ]
    annotated = {
        (p["target"]["kind"], p["target"]["name"]): yaml.safe_load(p["patch"])[0]["value"]
        for p in kustomization["patches"]
    }
    assert set(annotated) == {
        ("MutatingWebhookConfiguration", "kubectl-dra"),
        ("ValidatingWebhookConfiguration", "kubectl-dra-policy"),
    }
    for added in annotated.values():
        assert added == {
            "cert-manager.io/inject-ca-from": f"kubectl-dra/{serving['metadata']['name']}"
        }


def _policy_hook(objects: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    (hook,) = objects["ValidatingWebhookConfiguration", "kubectl-dra-policy"]["webhooks"]
    return hook  # type: ignore[no-any-return]


def test_the_policy_check_is_sent_only_the_policy_configmap_and_never_blocks(
    objects: dict[tuple[str, str], dict[str, Any]],
) -> None:
    hook = _policy_hook(objects)
    assert hook["rules"] == _creates_and_updates_of("configmaps")
    # Ignore: the reload keeps the last good policy; a down webhook must not lock the policy.
    assert hook["failurePolicy"] == "Ignore"
    assert hook["sideEffects"] == "None"
    assert hook["admissionReviewVersions"] == ["v1"]
    assert 1 <= hook["timeoutSeconds"] <= 10
    assert hook["namespaceSelector"] == {
        "matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["kubectl-dra"]}
        ]
    }
    assert "caBundle" not in hook["clientConfig"]  # injected at install time, never committed


def test_the_policy_check_reaches_the_webhook_service_and_the_mounted_configmap(
    objects: dict[tuple[str, str], dict[str, Any]],
) -> None:
    target = _policy_hook(objects)["clientConfig"]["service"]
    (mutating,) = objects["MutatingWebhookConfiguration", "kubectl-dra"]["webhooks"]
    assert target == {**mutating["clientConfig"]["service"], "path": "/validate-policy"}
    pod = objects["Deployment", "kubectl-dra-webhook"]["spec"]["template"]["spec"]
    mounted = {v["name"]: v for v in pod["volumes"]}["policy"]["configMap"]["name"]
    configmap = objects["ConfigMap", mounted]["metadata"]
    assert (
        configmap["namespace"]
        in _policy_hook(objects)["namespaceSelector"]["matchExpressions"][0]["values"]
    )


@pytest.mark.parametrize(
    ("name", "sent"),
    [("kubectl-dra-policy", True), ("kubectl-dra-policy-old", False), ("other", False)],
)
def test_the_policy_check_condition_selects_the_configmap_by_name(
    objects: dict[tuple[str, str], dict[str, Any]], name: str, sent: bool
) -> None:
    import celpy

    (condition,) = _policy_hook(objects)["matchConditions"]
    env = celpy.Environment()
    program = env.program(env.compile(condition["expression"]))
    configmap = {"metadata": {"name": name, "namespace": "kubectl-dra"}, "data": {}}
    assert bool(program.evaluate({"object": celpy.json_to_cel(configmap)})) is sent


def _pod(containers: list[dict[str, Any]], init: list[dict[str, Any]] | None = None) -> Any:
    spec: dict[str, Any] = {"containers": containers}
    if init is not None:
        spec["initContainers"] = init
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec}


def _gpu(section: str, resource: str = "nvidia.com/gpu") -> dict[str, Any]:
    return {"name": "c", "resources": {section: {resource: "1", "cpu": "1"}}}


@pytest.mark.parametrize(
    ("pod", "sent"),
    [
        (_pod([_gpu("limits")]), True),
        (_pod([_gpu("requests", "nvidia.com/mig-1g.10gb")]), True),
        (_pod([{"name": "c"}, _gpu("limits", "nvidia.com/gpu.shared")]), True),
        (_pod([{"name": "c"}], init=[_gpu("limits")]), True),
        (_pod([{"name": "c"}], init=[_gpu("requests")]), True),
        (_pod([{"name": "c", "resources": {"limits": {"cpu": "1"}}}]), False),
        (_pod([{"name": "c"}]), False),
        (_pod([{"name": "c", "resources": {}}], init=[{"name": "i"}]), False),
        (_pod([_gpu("limits", "gpu.example.com/device")]), False),
        (_pod([_gpu("limits", "amd.com/gpu")]), False),
        (_pod([_gpu("limits", "nvidia.com/vgpu")]), False),  # nvidia.com/, but not in the policy
    ],
)
def test_match_conditions_send_only_pods_with_resources_the_policy_maps(
    objects: dict[tuple[str, str], dict[str, Any]], pod: Any, sent: bool
) -> None:
    """The CEL expression evaluated with cel-python (the API server's verdict: tests/e2e)."""
    import celpy

    (hook,) = objects["MutatingWebhookConfiguration", "kubectl-dra"]["webhooks"]
    conditions = {c["name"]: c["expression"] for c in hook["matchConditions"]}
    env = celpy.Environment()
    program = env.program(env.compile(conditions["asks-for-legacy-gpu-resources"]))
    assert bool(program.evaluate({"object": celpy.json_to_cel(pod)})) is sent


@pytest.mark.parametrize(
    ("operation", "old_annotations", "sent"),
    [
        ("CREATE", None, True),
        ("UPDATE", {"kubectl-dra.io/rewritten": "{}"}, True),
        ("UPDATE", {"other": "x"}, False),
        ("UPDATE", None, False),
    ],
)
def test_updates_are_sent_only_for_pods_we_rewrote(
    objects: dict[tuple[str, str], dict[str, Any]],
    operation: str,
    old_annotations: dict[str, str] | None,
    sent: bool,
) -> None:
    import celpy

    (hook,) = objects["MutatingWebhookConfiguration", "kubectl-dra"]["webhooks"]
    conditions = {c["name"]: c["expression"] for c in hook["matchConditions"]}
    env = celpy.Environment()
    program = env.program(env.compile(conditions["created-or-rewritten"]))
    metadata: dict[str, Any] = {"name": "p"}
    if old_annotations is not None:
        metadata["annotations"] = old_annotations
    activation = {
        "request": celpy.json_to_cel({"operation": operation}),
        "oldObject": celpy.json_to_cel({"metadata": metadata}),
    }
    assert bool(program.evaluate(activation)) is sent


def test_the_network_policy_overlay_admits_only_listed_sources_to_the_webhook_port() -> None:
    docs = load_kustomization(MANIFESTS / "overlays" / "network-policy")
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    assert len(policies) == 1
    policy = policies[0]
    assert_valid(policy)
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = policy["spec"]["podSelector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()  # it selects the webhook's pods
    assert policy["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    container_port = deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]
    assert rule["ports"] == [{"protocol": "TCP", "port": container_port["containerPort"]}]
    # Only address blocks: no pod or namespace selector that a tenant's pod could match.
    assert [list(source) for source in rule["from"]] == [["ipBlock"]]
