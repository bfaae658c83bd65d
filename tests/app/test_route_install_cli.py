"""`dra-webhook admission-policies` without a cluster: what to prune, and bad input.

Applying and deleting against the API server is tests/e2e/test_incluster_route.py's part (the
chart's hook Jobs run these commands in the cluster).
"""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner, Result

from dracore.admission_policies import compile_route
from dracore.classes import generate_classes
from dracore.policy import Policy
from webhook.cli import cli
from webhook.ops.route_install import INSTALLER, INSTALLER_LABEL, KINDS, labelled, plan_prune


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), prog_name="dra-webhook")


def manifests() -> list[dict]:  # type: ignore[type-arg]
    policy = Policy.from_mapping(
        {"apiVersion": "kubectl-dra.io/v1alpha1", "kind": "GPUPolicy", "spec": {}}
    )
    classes = generate_classes(policy)
    return [*classes.manifests, *compile_route(policy, classes).manifests]


def test_only_what_the_policy_no_longer_produces_is_pruned_bindings_first() -> None:
    wanted = manifests()
    installed = {
        "DeviceClass": ["kubectl-dra-gpu", "kubectl-dra-gpu-mps"],
        "MutatingAdmissionPolicy": [
            "kubectl-dra-rename-defaults",
            "kubectl-dra-rename-namespaces-0",
        ],
        "MutatingAdmissionPolicyBinding": ["kubectl-dra-rename-namespaces-0-names"],
    }
    assert [(k.kind, n) for k, n in plan_prune(installed, wanted)] == [
        ("MutatingAdmissionPolicyBinding", "kubectl-dra-rename-namespaces-0-names"),
        ("MutatingAdmissionPolicy", "kubectl-dra-rename-namespaces-0"),
        ("DeviceClass", "kubectl-dra-gpu-mps"),
    ]
    # Deleting everything: every kind, the classes last.
    everything = plan_prune(installed, [])
    assert len(everything) == 5 and everything[-1][0].kind == "DeviceClass"
    assert [k.kind for k in KINDS][-1] == "DeviceClass"


def test_applied_objects_carry_the_installer_label_and_keep_theirs() -> None:
    (first, *_) = manifests()
    marked = labelled(first)
    assert marked["metadata"]["labels"] == {
        **first["metadata"]["labels"],
        INSTALLER_LABEL: INSTALLER,
    }
    assert INSTALLER_LABEL not in first["metadata"]["labels"]  # a copy


def test_bad_input_is_one_line_naming_the_option_or_file(tmp_path: Path) -> None:
    base = ["admission-policies", "apply", "--webhook-namespace", "kubectl-dra"]
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "apiVersion: kubectl-dra.io/v1alpha1\nkind: GPUPolicy\nspec: {mode: Sometimes}\n"
    )
    cases = [
        (
            [*base, "--policy", str(policy), "--policy-configmap", "no-namespace"],
            2,
            "--policy-configmap",
        ),
        (
            [*base, "--policy", str(tmp_path / "missing.yaml"), "--policy-configmap", "a/b"],
            1,
            "missing.yaml",
        ),
        ([*base, "--policy", str(policy), "--policy-configmap", "a/b"], 1, "mode"),
    ]
    for args, code, named in cases:
        result = invoke(*args)
        assert result.exit_code == code, result.output
        assert named in result.stderr and "Traceback" not in result.output


def test_an_unreadable_kubeconfig_is_one_line(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("not: a kubeconfig\n")
    result = invoke("admission-policies", "delete", "--kubeconfig", str(kubeconfig))
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: cannot load the cluster's credentials")
    assert "Traceback" not in result.output
