"""`kubectl dra validate` on GPUPolicy documents and their ConfigMaps: the loader's own rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner

from kubectl_dra.cli import cli
from kubectl_dra.documents import Document, load_documents
from kubectl_dra.validate import validate_documents

ROOT = Path(__file__).resolve().parents[2]
FIVE_MISTAKES = """\
apiVersion: kubectl-dra.io/v1alpha1
kind: GPUPolicy
metadata: {name: gpu}
spec:
  mode: Enforced
  resources:
  - {name: nvidia.com/gpu, deviceClassName: Gpu_Class}
  defaults:
    maxGPUsPerPod: 64
    sharng: MPS
  exemptNamespaces: [Kube_System]
"""


def findings_of(*objects: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    documents = [Document("policy.yaml", i + 1, o) for i, o in enumerate(objects)]
    return [(f.severity, f.object, f.field, f.message) for f in validate_documents(documents)]


def configmap(text: str, name: str = "kubectl-dra-policy") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "kubectl-dra"},
        "data": {"policy.yaml": text},
    }


def test_every_mistake_of_a_policy_is_an_error_with_its_field() -> None:
    found = findings_of(yaml.safe_load(FIVE_MISTAKES))
    assert [(s, o, f) for s, o, f, _ in found] == [
        ("error", "GPUPolicy/gpu", "spec.mode"),
        ("error", "GPUPolicy/gpu", "spec.resources[0].deviceClassName"),
        ("error", "GPUPolicy/gpu", "spec.defaults.sharng"),
        ("error", "GPUPolicy/gpu", "spec.defaults.maxGPUsPerPod"),
        ("error", "GPUPolicy/gpu", "spec.exemptNamespaces[0]"),
    ]
    assert found[0][3] == '"Enforced" is not one of Enforce, Audit, Disabled'


def test_the_configmap_form_reports_fields_under_its_policy_key() -> None:
    found = findings_of(configmap(FIVE_MISTAKES))
    assert len(found) == 5
    assert found[0][1:3] == (
        "ConfigMap/kubectl-dra/kubectl-dra-policy",
        "data[policy.yaml].spec.mode",
    )
    broken = findings_of(configmap("spec: ["))
    assert [(s, f) for s, _, f, _ in broken] == [("error", "data[policy.yaml]")]
    assert broken[0][3].startswith("not valid YAML")
    missing = {"kind": "ConfigMap", "metadata": {"name": "kubectl-dra-policy"}, "data": {}}
    assert [(f, m) for _, _, f, m in findings_of(missing)] == [
        ("data.policy.yaml", "missing; put the GPUPolicy there")
    ]


def test_resources_the_shipped_registration_never_sends_are_warnings() -> None:
    text = (
        "apiVersion: kubectl-dra.io/v1alpha1\nkind: GPUPolicy\nmetadata: {name: gpu}\nspec:\n"
        "  resources:\n  - {name: example.com/gpu, deviceClassName: gpu.example.com}\n"
    )
    found = findings_of(yaml.safe_load(text))
    assert [(s, f) for s, _, f, _ in found] == [("warning", "spec.resources[0].name")]
    assert "kubectl dra registration --policy FILE" in found[0][3]


def test_the_shipped_policy_and_other_configmaps_have_no_findings() -> None:
    shipped = load_documents([str(ROOT / "manifests/base/policy-configmap.yaml")])
    assert validate_documents(shipped) == []
    other = {"kind": "ConfigMap", "metadata": {"name": "app"}, "data": {"x": "y"}}
    assert findings_of(other) == []


def test_command_exits_1_on_a_broken_policy(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(FIVE_MISTAKES)
    result = CliRunner().invoke(cli, ["validate", "-f", str(path)])
    assert result.exit_code == 1
    assert len(result.stdout.splitlines()) == 5
    assert "5 errors" in result.stderr
