"""`kubectl dra audit` through click with an in-memory reader: flags, output, exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner, Result

from hack import fakegpu
from kubectl_dra.cli import cli

POLICY_CM = {
    "metadata": {"name": "kubectl-dra-policy", "namespace": "kubectl-dra"},
    "data": {
        "policy.yaml": "apiVersion: kubectl-dra.io/v1alpha1\nkind: GPUPolicy\nspec:\n"
        "  defaults: {maxGPUsPerPod: 2}\n"
    },
}


def gpu_pod(name: str, ns: str, gpus: int) -> dict[str, Any]:
    return {
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "containers": [{"name": "m", "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}]
        },
    }


class AuditFake:
    """The lists audit makes, from plain dicts; counts calls like KubeGateway.requests."""

    default_namespace = "ml"

    def __init__(self, *, configmap: dict[str, Any] | None = POLICY_CM) -> None:
        node = fakegpu.FakeNode("h100", fakegpu.NVIDIA_DRIVER, fakegpu.H100_80GB)
        self.pods = [gpu_pod("small", "ml", 1), gpu_pod("big", "ml", 4), gpu_pod("other", "web", 1)]
        self.nodes, self.slices = [fakegpu.make_node(node)], [fakegpu.make_slice(node)]
        self.configmap = configmap
        self.admission_policies: list[dict[str, Any]] = []
        self.admission_policy_bindings: list[dict[str, Any]] = []
        self.version = "v1.37.2"
        self.classes = fakegpu.device_classes()
        self.calls: list[str] = []

    def _log(self, what: str) -> None:
        self.calls.append(what)

    def list_workloads(self, kind: str, namespace: str | None) -> list[dict[str, Any]]:
        self._log(f"list {kind}")
        return []

    def list_pods(
        self, namespace: str | None, *, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        self._log("list Pod")
        return [p for p in self.pods if namespace in (None, p["metadata"]["namespace"])]

    def list_namespaces(self) -> list[dict[str, Any]]:
        self._log("list Namespace")
        return [{"metadata": {"name": n}} for n in ("ml", "web")]

    def list_nodes(self) -> list[dict[str, Any]]:
        self._log("list Node")
        return self.nodes

    def list_resource_slices(self) -> list[dict[str, Any]]:
        self._log("list ResourceSlice")
        return self.slices

    def list_device_classes(self) -> list[dict[str, Any]]:
        self._log("list DeviceClass")
        return self.classes

    def list_resource_claims(self, namespace: str | None) -> list[dict[str, Any]]:
        self._log("list ResourceClaim")
        return []

    def list_mutating_webhook_configurations(self) -> list[dict[str, Any]]:
        self._log("list MutatingWebhookConfiguration")
        return []

    def list_mutating_admission_policies(self) -> list[dict[str, Any]]:
        self._log("list MutatingAdmissionPolicy")
        return self.admission_policies

    def list_mutating_admission_policy_bindings(self) -> list[dict[str, Any]]:
        self._log("list MutatingAdmissionPolicyBinding")
        return self.admission_policy_bindings

    def get_config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        self._log(f"get ConfigMap {namespace}/{name}")
        return self.configmap

    def server_version(self) -> str:
        self._log("get version")
        return self.version


def run(fake: Any, *args: str) -> Result:
    # A wide terminal: these tests read whole rows (tests/app/test_output_width.py fits them).
    return CliRunner().invoke(
        cli, ["audit", *args], obj=fake, prog_name="kubectl dra", env={"COLUMNS": "400"}
    )


def test_table_uses_the_cluster_policy_and_the_context_namespace() -> None:
    fake = AuditFake()
    result = run(fake)

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Policy: ConfigMap kubectl-dra/kubectl-dra-policy (mode Enforce")
    assert "Workloads: 2 (1 rewritten, 0 unchanged, 1 denied" in lines[0]
    table = lines[2:5]
    assert table[0].split()[:5] == ["NAMESPACE", "WORKLOAD", "REPLICAS", "LEGACY/POD", "DECISION"]
    assert table[1].split()[:5] == ["ml", "Pod/big", "1", "nvidia.com/gpu=4", "denied"]
    assert table[2].split()[:5] == ["ml", "Pod/small", "1", "nvidia.com/gpu=1", "rewritten"]
    assert 'Pod "ml/big"' in table[1] and "maxGPUsPerPod" in table[1]
    # One call per list, whatever the cluster holds: 7 workload kinds, pods, namespaces, nodes,
    # slices, classes, claims, webhook configurations, the admission policies and their
    # bindings, the policy ConfigMap and the server's version.
    assert len(fake.calls) == len(set(fake.calls)) == 18


def test_json_document_and_all_namespaces() -> None:
    result = run(AuditFake(), "-A", "-o", "json")

    doc = json.loads(result.stdout)
    assert (doc["apiVersion"], doc["kind"]) == ("kubectl-dra.io/v1alpha1", "AuditReport")
    assert set(doc) == {
        "apiVersion",
        "kind",
        "policy",
        "summary",
        "workloads",
        "capacity",
        "demand",
        "findings",
        "admissionPolicies",
        "routes",
    }
    assert [(w["namespace"], w["name"], w["decision"]) for w in doc["workloads"]] == [
        ("ml", "big", "denied"),
        ("ml", "small", "rewritten"),
        ("web", "other", "rewritten"),
    ]
    small = doc["workloads"][1]
    assert small["requests"] == [
        {"name": "m", "deviceClass": "gpu.nvidia.com", "count": 1, "selectors": []}
    ]
    assert small["demand"] == {"nvidia.com/gpu": 1} and small["exempt"] is None
    assert doc["demand"][0]["needed"] == 2 and doc["demand"][0]["free"] == 8
    assert {"check": "webhook", "severity": "warning"}.items() <= doc["findings"][-1].items()


def test_fail_on_denied_exits_3_and_fail_on_unready_passes_when_ready() -> None:
    assert run(AuditFake(), "--fail-on", "unready").exit_code == 0
    result = run(AuditFake(), "--fail-on", "denied", "-o", "yaml")
    assert result.exit_code == 3
    assert yaml.safe_load(result.stdout)["summary"]["denied"] == 1
    assert "--fail-on denied matched" in result.stderr


def test_policy_file_wins_and_a_missing_configmap_falls_back_with_a_warning(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text("apiVersion: kubectl-dra.io/v1alpha1\nkind: GPUPolicy\nspec: {mode: Audit}\n")
    result = run(AuditFake(), "--policy", str(policy))
    assert f"Policy: {policy} (mode Audit" in result.stdout and "2 rewritten" in result.stdout

    result = run(AuditFake(configmap=None))
    assert "ConfigMap kubectl-dra/kubectl-dra-policy not found" in result.stderr
    assert "Policy: built-in" in result.stdout


def test_bad_input_is_one_line() -> None:
    result = run(AuditFake(), "-n", "ml", "-A")
    assert result.exit_code == 2 and "cannot be used together" in result.stderr
    bad = run(
        AuditFake(
            configmap={
                "metadata": {"name": "kubectl-dra-policy"},
                "data": {"policy.yaml": "spec: {mode: Loud}"},
            }
        )
    )
    assert bad.exit_code == 1
    assert bad.stderr.startswith('Error: ConfigMap "kubectl-dra-policy" data.policy.yaml: ')
    assert "Traceback" not in bad.output


def with_compiled_route(fake: AuditFake) -> AuditFake:
    """The cluster as the chart's installer leaves it: the policy ConfigMap's text compiled,
    guarded by that ConfigMap."""
    from dracore.admission_policies import compile_route
    from dracore.admission_policies.guard import PolicySource
    from dracore.classes import generate_classes
    from dracore.policy import Policy

    text = POLICY_CM["data"]["policy.yaml"]
    policy = Policy.from_yaml(text)
    source = PolicySource("kubectl-dra", "kubectl-dra-policy", "policy.yaml", text)
    manifests = compile_route(policy, generate_classes(policy), guard=source).manifests
    fake.admission_policies = [m for m in manifests if m["kind"] == "MutatingAdmissionPolicy"]
    fake.admission_policy_bindings = [
        m for m in manifests if m["kind"] == "MutatingAdmissionPolicyBinding"
    ]
    return fake


def test_the_route_bindings_and_each_workloads_route_are_shown() -> None:
    fake = with_compiled_route(AuditFake())
    result = run(fake, "-o", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["admissionPolicies"] == [
        {
            "name": "kubectl-dra-rename-defaults",
            "policy": "kubectl-dra-rename-defaults",
            "configmap": "kubectl-dra/kubectl-dra-policy",
            "current": True,
        }
    ]
    # small (1 GPU) is renamed in the API server; big (4, over maxGPUsPerPod 2) goes to the
    # webhook, which denies it.
    assert {r["workload"]: r["route"] for r in doc["routes"]} == {
        "Pod/big": "webhook",
        "Pod/small": "admission-policy",
    }
    table = run(fake).stdout
    assert "ROUTE" in table.splitlines()[2]
    assert "kubectl-dra-rename-defaults" in table and "admission-policy" in table


def test_an_edited_configmap_shows_the_route_stepped_aside() -> None:
    fake = with_compiled_route(AuditFake())
    edited = json.loads(json.dumps(POLICY_CM))
    edited["data"]["policy.yaml"] += "# edited\n"
    fake.configmap = edited
    doc = json.loads(run(fake, "-o", "json").stdout)
    assert [b["current"] for b in doc["admissionPolicies"]] == [False]
    assert {r["route"] for r in doc["routes"]} == {"webhook"}
    table = run(fake).stdout
    assert "no: the webhook serves its pods" in table


def _generated_classes() -> list[dict[str, Any]]:
    from dracore.classes import generate_classes
    from dracore.policy import Policy

    policy = Policy.from_yaml(POLICY_CM["data"]["policy.yaml"], source="test")
    return [dict(c.manifest) for c in generate_classes(policy).classes]


def test_the_path_each_rewritten_workload_takes_follows_the_classes_and_the_release() -> None:
    fake = AuditFake()
    fake.classes = [*fakegpu.device_classes(), *_generated_classes()]
    document = json.loads(run(fake, "-o", "json").stdout)
    paths = {r["workload"]: r["path"] for r in document["routes"]}
    assert paths["Pod/small"] == "scheduler"
    table = run(fake).stdout.splitlines()
    assert table[2].split()[5] == "PATH"
    assert table[4].split()[:6] == [
        "ml",
        "Pod/small",
        "1",
        "nvidia.com/gpu=1",
        "rewritten",
        "scheduler",
    ]
    assert table[3].split()[5] == "-"  # denied: no path

    fake.version = "v1.34.4"  # the scheduler does not serve extended resources by default
    document = json.loads(run(fake, "-o", "json").stdout)
    assert {r["workload"]: r["path"] for r in document["routes"]}["Pod/small"] == "templates"
    assert "PATH" not in run(fake).stdout.splitlines()[2]
