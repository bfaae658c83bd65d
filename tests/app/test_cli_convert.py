"""`kubectl dra convert` through click's CliRunner: outputs, exit codes, stdin, round trips."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from dracore.translate import REWRITTEN_ANNOTATION
from kubectl_dra.cli import cli
from tests.builders import assert_valid, container, make_pod

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p for p in (ROOT / "examples").rglob("*.yaml") if not p.name.startswith("policy"))
EXAMPLE_POLICY = ROOT / "examples" / "policy-example-driver.yaml"


def invoke(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=stdin, prog_name="kubectl dra")


def objects(result: Result) -> list[dict[str, Any]]:
    assert result.exit_code == 0, result.output
    return [d for d in yaml.safe_load_all(result.stdout) if d]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(ROOT)))
def test_examples_convert_to_schema_valid_objects(path: Path) -> None:
    out = objects(invoke("convert", "-f", str(path), "--policy", str(EXAMPLE_POLICY)))
    assert_valid(*out)
    if "legacy" in path.parts or path.name.startswith("00-"):
        pods = [o for o in out if o["kind"] == "Pod"]
        assert pods and all(REWRITTEN_ANNOTATION in p["metadata"]["annotations"] for p in pods)
        assert all(
            "nvidia.com/gpu" not in json.dumps(c.get("resources", {}))
            for p in pods
            for c in p["spec"]["containers"]
        )


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(ROOT)))
def test_converting_the_output_again_changes_nothing(path: Path) -> None:
    first = invoke("convert", "-f", str(path), "--policy", str(EXAMPLE_POLICY))
    second = invoke("convert", "-f", "-", "--policy", str(EXAMPLE_POLICY), stdin=first.stdout)
    assert second.exit_code == 0
    assert second.stdout == first.stdout


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("02-intra-pod-sharing.yaml", "podSharing: Disabled"),
        ("03-inter-pod-sharing.yaml", "sharedClaims: Disabled"),
    ],
)
def test_sharing_annotations_are_refused_under_the_builtin_policy(name: str, message: str) -> None:
    result = invoke("convert", "-f", str(ROOT / "examples" / "legacy" / name))
    assert result.exit_code == 1
    assert 'document 2: Pod "gpu' in result.stderr and message in result.stderr


def test_native_dra_examples_pass_through_unchanged() -> None:
    path = ROOT / "examples" / "02-intra-pod-sharing.yaml"
    assert objects(invoke("convert", "-f", str(path))) == [
        d for d in yaml.safe_load_all(path.read_text()) if d
    ]


def test_legacy_shared_claim_pods_share_one_emitted_claim() -> None:
    out = objects(
        invoke(
            "convert",
            "-f",
            str(ROOT / "examples/legacy/03-inter-pod-sharing.yaml"),
            "--policy",
            str(EXAMPLE_POLICY),
        )
    )
    assert [o["kind"] for o in out] == ["Namespace", "ResourceClaim", "Pod", "Pod"]
    assert {
        p["spec"]["resourceClaims"][0]["resourceClaimName"] for p in out if p["kind"] == "Pod"
    } == {"single-gpu"}


def workload(kind: str, api_version: str, pod: dict[str, Any]) -> dict[str, Any]:
    template = {"metadata": {"labels": {"app": "train"}}, "spec": pod["spec"]}
    spec: dict[str, Any] = {"template": template}
    if kind == "CronJob":
        spec = {
            "schedule": "0 * * * *",
            "jobTemplate": {
                "spec": {
                    "template": {**template, "spec": {**pod["spec"], "restartPolicy": "Never"}}
                }
            },
        }
    elif kind == "Job":
        spec["template"]["spec"]["restartPolicy"] = "Never"
    else:
        spec["selector"] = {"matchLabels": {"app": "train"}}
    return {"apiVersion": api_version, "kind": kind, "metadata": {"name": "train"}, "spec": spec}


@pytest.mark.parametrize(
    ("kind", "api_version", "path"),
    [
        ("Deployment", "apps/v1", ("spec", "template")),
        ("StatefulSet", "apps/v1", ("spec", "template")),
        ("DaemonSet", "apps/v1", ("spec", "template")),
        ("ReplicaSet", "apps/v1", ("spec", "template")),
        ("Job", "batch/v1", ("spec", "template")),
        ("CronJob", "batch/v1", ("spec", "jobTemplate", "spec", "template")),
    ],
)
def test_workload_pod_templates_are_converted(
    tmp_path: Path, kind: str, api_version: str, path: tuple[str, ...]
) -> None:
    manifest = tmp_path / "w.yaml"
    obj = workload(kind, api_version, make_pod(container("app", gpus=1), namespace=None))
    if kind == "StatefulSet":
        obj["spec"]["serviceName"] = "train"
    manifest.write_text(yaml.safe_dump(obj))
    out = objects(invoke("convert", "-f", str(manifest), "-n", "ml", "--no-classes"))
    assert_valid(*out)
    template, converted = out
    assert template["kind"] == "ResourceClaimTemplate"
    assert (
        "namespace" not in template["metadata"]
    )  # like the workload, so `kubectl apply -n` places both
    node: Any = converted
    for key in path:
        node = node[key]
    assert (
        node["spec"]["resourceClaims"][0]["resourceClaimTemplateName"]
        == template["metadata"]["name"]
    )
    assert node["metadata"]["labels"] == {"app": "train"}


def test_json_output_is_a_list() -> None:
    result = invoke(
        "convert", "-f", str(ROOT / "examples/00-legacy-pod.yaml"), "-o", "json", "--no-classes"
    )
    document = json.loads(result.stdout)
    assert (document["kind"], [i["kind"] for i in document["items"]]) == (
        "List",
        ["ResourceClaimTemplate", "Pod"],
    )


def test_json_input_and_lists_are_read(tmp_path: Path) -> None:
    manifest = tmp_path / "list.json"
    manifest.write_text(
        json.dumps(
            {"apiVersion": "v1", "kind": "List", "items": [make_pod(container("a", gpus=1))]}
        )
    )
    converted = invoke("convert", "-f", str(manifest), "--kubernetes-version", "1.35")
    assert [o["kind"] for o in objects(converted)] == ["ResourceClaimTemplate", "Pod"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("kind: Pod\nmetadata: {name: a}\nspec: [\n", "not valid YAML at line"),
        ("- 1\n- 2\n", "document 1: not a Kubernetes object (no kind)"),
        (
            yaml.safe_dump(make_pod(container("app", gpus="1.5"))),
            'document 1: Pod "ml/train", container "app"',
        ),
        (yaml.safe_dump(make_pod(container("app", gpus=40))), "at most 32 devices per request"),
    ],
)
def test_bad_input_is_one_clean_error(tmp_path: Path, content: str, message: str) -> None:
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(content)
    result = invoke("convert", "-f", str(manifest))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_invalid_policy_names_the_field(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(
        "apiVersion: kubectl-dra.io/v1alpha1\nkind: GPUPolicy\nspec: {defaults: {sharing: Timeslicing}}\n"
    )
    result = invoke(
        "convert", "-f", str(ROOT / "examples/00-legacy-pod.yaml"), "--policy", str(policy)
    )
    assert result.exit_code == 1
    assert (
        'spec.defaults.sharing: "Timeslicing" is not one of Exclusive, TimeSlicing, MPS'
        in result.stderr
    )


def test_usage_errors_exit_2() -> None:
    assert invoke("convert").exit_code == 2
    assert invoke("convert", "-f", "x", "-o", "table").exit_code == 2


def test_warnings_go_to_stderr(tmp_path: Path) -> None:
    pod = make_pod(container("app", gpus=1), nodeSelector={"nvidia.com/gpu.memory": "lots"})
    manifest = tmp_path / "p.yaml"
    manifest.write_text(yaml.safe_dump(pod))
    result = invoke("convert", "-f", str(manifest))
    assert result.exit_code == 0
    assert 'Warning: Pod "ml/train": nodeSelector nvidia.com/gpu.memory=lots kept' in result.stderr
    assert "Warning" not in result.stdout


def test_shell_completion_works_for_the_installed_executable() -> None:
    """click derives the variable from prog_name; ours has a space, so main() names it."""
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "_KUBECTL_DRA_COMPLETE": "bash_complete",
        "COMP_WORDS": "kubectl-dra desc",
        "COMP_CWORD": "1",
    }
    done = subprocess.run(
        [sys.executable, "-m", "kubectl_dra"], env=env, capture_output=True, text=True, check=False
    )
    assert done.stdout.strip() == "plain,describe"


# Which path each pod takes ---------------------------------------------------------------------


def test_each_converted_pod_says_its_path_and_qualifying_ones_are_renamed(tmp_path: Path) -> None:
    manifest = tmp_path / "pods.yaml"
    plain = make_pod(container("app", gpus=2), name="plain")
    init = make_pod(container("app", gpus=1), name="init", init=[container("prep", gpus=1)])
    manifest.write_text(yaml.safe_dump_all([plain, init]))
    result = invoke("convert", "-f", str(manifest))
    assert [o["kind"] for o in objects(result)] == ["Pod", "ResourceClaimTemplate", "Pod"]
    renamed = objects(result)[0]
    assert renamed["spec"]["containers"][0]["resources"]["limits"] == {
        "deviceclass.resource.kubernetes.io/kubectl-dra-gpu": 2
    }
    assert result.stderr.splitlines() == [
        'Path: Pod "ml/plain": scheduler path (DeviceClass kubectl-dra-gpu on Kubernetes 1.37)',
        'Path: Pod "ml/init": templates path (init container "prep" asks for GPUs; the '
        "scheduler would give it devices of its own)",
    ]


@pytest.mark.parametrize(
    ("flags", "reason"),
    [
        (("--no-classes",), "DeviceClass kubectl-dra-gpu is not in the cluster"),
        (("--kubernetes-version", "v1.34.1"), "the server is Kubernetes 1.34"),
    ],
)
def test_without_classes_or_on_an_old_server_pods_take_the_template_path(
    flags: tuple[str, ...], reason: str
) -> None:
    result = invoke("convert", "-f", str(ROOT / "examples/00-legacy-pod.yaml"), *flags)
    assert [o["kind"] for o in objects(result)] == ["ResourceClaimTemplate", "Pod"]
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("Path: ")]
    assert "templates path" in line and reason in line


def test_a_release_that_is_not_one_is_a_usage_error() -> None:
    result = invoke(
        "convert", "-f", str(ROOT / "examples/00-legacy-pod.yaml"), "--kubernetes-version", "new"
    )
    assert result.exit_code == 2
    assert "'new' is not a release such as 1.37" in result.stderr
