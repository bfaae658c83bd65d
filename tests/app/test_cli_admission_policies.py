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
