"""`kubectl dra admission-policies` through click's CliRunner."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner, Result

from kubectl_dra.cli import cli

POLICY = """\
apiVersion: kubectl-dra.io/v1alpha1
kind: GPUPolicy
spec:
  namespaces:
  - {names: [ml], sharing: TimeSlicing}
"""


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), prog_name="kubectl dra")


def test_prints_the_classes_then_the_policies_and_their_bindings(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    result = invoke("admission-policies", "--policy", str(policy), "--kubernetes-version", "1.37")
    assert result.exit_code == 0, result.output
    kinds = [d["kind"] for d in yaml.safe_load_all(result.stdout)]
    classes = kinds.count("DeviceClass")
    assert classes == 3  # gpu, gpu time-sliced, gpu.shared (no MIG profile given)
    assert kinds[:classes] == ["DeviceClass"] * classes  # before the policies naming them
    assert kinds[classes:].count("MutatingAdmissionPolicy") == 2
    assert kinds[classes:].count("ValidatingAdmissionPolicyBinding") == 2


def test_before_1_36_it_prints_nothing_and_says_why_in_one_line() -> None:
    result = invoke("admission-policies", "--kubernetes-version", "v1.35.4")
    assert result.exit_code == 0
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert "1.36" in line and "webhook" in line


def test_audit_mode_prints_nothing(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.replace("spec:\n", "spec:\n  mode: Audit\n"))
    result = invoke("admission-policies", "--policy", str(policy))
    assert result.exit_code == 0 and result.stdout == ""
    assert "Audit" in result.stderr


def test_a_version_that_is_not_one_is_a_usage_error() -> None:
    result = invoke("admission-policies", "--kubernetes-version", "latest")
    assert result.exit_code == 2
    assert "--kubernetes-version" in result.stderr


def test_with_a_policy_configmap_every_policy_and_binding_is_guarded(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    result = invoke(
        "admission-policies", "--policy", str(policy),
        "--policy-configmap", "gpu-ops/gpu-policy:gpu.yaml",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    docs = list(yaml.safe_load_all(result.stdout))
    policies = [d for d in docs if d["kind"].endswith("AdmissionPolicy")]
    bindings = [d for d in docs if d["kind"].endswith("PolicyBinding")]
    assert policies and bindings
    for doc in policies:
        (guard, *_) = doc["spec"]["matchConditions"]
        assert guard["expression"].startswith('has(params.data) && "gpu.yaml" in params.data')
        assert guard["expression"].endswith(
            '"apiVersion: kubectl-dra.io/v1alpha1\\u000akind: GPUPolicy\\u000aspec:\\u000a'
            '  namespaces:\\u000a  - {names: [ml], sharing: TimeSlicing}\\u000a"'
        )
    assert {d["spec"]["paramRef"]["namespace"] for d in bindings} == {"gpu-ops"}
    assert "no --policy-configmap" not in result.stderr


def test_without_a_policy_configmap_stderr_says_there_is_no_guard(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    result = invoke("admission-policies", "--policy", str(policy))
    assert result.exit_code == 0
    assert "paramRef" not in result.stdout
    assert "no --policy-configmap" in result.stderr


def test_a_policy_configmap_needs_the_policy_file_and_a_valid_reference(tmp_path: Path) -> None:
    result = invoke("admission-policies", "--policy-configmap", "ns/name")
    assert result.exit_code == 2 and "needs --policy" in result.stderr
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    result = invoke("admission-policies", "--policy", str(policy), "--policy-configmap", "name")
    assert result.exit_code == 2
    assert "--policy-configmap" in result.stderr and "NAMESPACE/NAME" in result.stderr
    assert "Traceback" not in result.output
