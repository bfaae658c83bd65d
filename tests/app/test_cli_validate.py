"""`kubectl dra validate` through click's CliRunner: exit codes, text and JSON, stdin, --cluster."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from kubectl_dra.cli import cli
from tests.builders import (
    FakeCluster,
    make_claim,
    make_claim_pod,
    make_template,
    request,
    validate_cluster,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").rglob("*.yaml"))
POLICY = ROOT / "examples" / "policy-example-driver.yaml"
BROKEN = yaml.safe_dump_all(
    [make_template(request(count=0)), make_claim_pod(claims=[{"name": "gpus"}])]
)


def invoke(*args: str, stdin: str | None = None, reader: FakeCluster | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=stdin, obj=reader, prog_name="kubectl dra")


def test_examples_validate_with_exit_0() -> None:
    args = [a for p in EXAMPLES for a in ("-f", str(p))]
    result = invoke("validate", *args)
    assert result.exit_code == 0, result.output
    # one info per legacy container (the six in examples/), nothing else
    assert [line.split()[0] for line in result.stdout.splitlines()] == ["info"] * 6
    assert "checked" in result.stderr and "Traceback" not in result.stderr


def test_errors_exit_1_with_one_aligned_line_each() -> None:
    result = invoke("validate", "-f", "-", stdin=BROKEN)
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert [line.split()[:3] for line in lines] == [
        [
            "error",
            "ResourceClaimTemplate/ml/single-gpu",
            "spec.spec.devices.requests[0].exactly.count",
        ],
        ["error", "Pod/ml/pod0", "spec.containers[0].resources.claims[0].name"],
    ]
    # columns line up: the message starts at the same offset on every line
    starts = {line.index(line.split()[3]) for line in lines}
    assert len(starts) == 1
    assert "2 objects checked: 2 errors." in result.stderr


def test_json_output_is_a_list_with_the_documented_keys() -> None:
    result = invoke("validate", "-f", "-", "-o", "json", stdin=BROKEN)
    assert result.exit_code == 1
    findings = json.loads(result.stdout)
    assert [sorted(f) for f in findings] == [["field", "message", "object", "severity"]] * 2
    assert findings[1]["object"] == "Pod/ml/pod0"
    assert "must be one of the names in spec.resourceClaims" in findings[1]["message"]


def test_json_output_of_a_clean_input_is_an_empty_list() -> None:
    result = invoke(
        "validate", "-f", str(ROOT / "examples" / "01-two-gpus-one-pod.yaml"), "-o", "json"
    )
    assert result.exit_code == 0
    assert json.loads(result.stdout) == []


@pytest.mark.parametrize(
    "args",
    [["validate"], ["validate", "-f", "x.yaml", "-o", "yaml"], ["validate", "--bogus"]],
)
def test_usage_errors_exit_2(args: list[str]) -> None:
    result = invoke(*args)
    assert result.exit_code == 2
    assert "Usage:" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("stdin", "needle"),
    [
        ("kind: [unclosed", "not valid YAML at line"),
        ("just: a mapping\n", "not a Kubernetes object (no kind)"),
    ],
)
def test_unreadable_input_is_one_error_line_without_traceback(stdin: str, needle: str) -> None:
    result = invoke("validate", "-f", "-", stdin=stdin)
    assert result.exit_code == 1
    assert needle in result.stderr
    assert "Traceback" not in result.stderr


def test_a_missing_file_is_an_error_naming_it(tmp_path: Path) -> None:
    result = invoke("validate", "-f", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 1
    assert "nope.yaml: cannot read" in result.stderr


@pytest.mark.parametrize("path", [p for p in EXAMPLES if p != POLICY], ids=lambda p: p.name)
def test_what_convert_generates_validates_clean(path: Path) -> None:
    converted = invoke("convert", "-f", str(path), "--policy", str(POLICY))
    assert converted.exit_code == 0, converted.output
    result = invoke("validate", "-f", "-", "-o", "json", stdin=converted.stdout)
    assert result.exit_code == 0, result.stdout
    assert [f for f in json.loads(result.stdout) if f["severity"] != "info"] == []
    # the converted pods no longer use the device plugin
    assert "device plugin" not in result.stdout


def test_cluster_mode_reads_the_injected_reader_with_four_calls() -> None:
    reader = validate_cluster()
    claim = make_claim(request(count=2))
    result = invoke("validate", "-f", "-", "--cluster", stdin=yaml.safe_dump(claim), reader=reader)
    assert result.exit_code == 0, result.output
    assert "request 'gpu': 8 devices match on 2 nodes" in result.stdout
    assert reader.requests == 4


def test_cluster_mode_fails_when_no_node_has_enough_devices() -> None:
    claim = make_claim(request(count=6))
    result = invoke(
        "validate",
        "-f",
        "-",
        "--cluster",
        "-o",
        "json",
        stdin=yaml.safe_dump(claim),
        reader=validate_cluster(),
    )
    assert result.exit_code == 1
    [finding] = [f for f in json.loads(result.stdout) if f["severity"] == "error"]
    assert finding["field"] == "spec.devices.requests[0].exactly.count"
    assert "needs 6 devices on one node" in finding["message"]


def test_cluster_mode_uses_the_contexts_namespace_for_objects_without_one() -> None:
    pod = make_claim_pod(claims=[{"name": "gpu", "request": "big"}])
    del pod["metadata"]["namespace"]
    reader = validate_cluster(
        resource_claim_templates=[make_template(request("big"), namespace="team")],
        default_namespace="team",
    )
    result = invoke("validate", "-f", "-", "--cluster", stdin=yaml.safe_dump(pod), reader=reader)
    assert result.exit_code == 0, result.output
    wrong = invoke(
        "validate", "-f", "-", "--cluster", "-n", "other", stdin=yaml.safe_dump(pod), reader=reader
    )
    assert wrong.exit_code == 1
    assert (
        "ResourceClaimTemplate other/single-gpu is not in the input nor in the cluster"
        in wrong.stdout
    )


@pytest.mark.parametrize(
    "read",
    [
        lambda r: r.list_pods(None),
        lambda r: r.get_pod("ml", "p"),
        lambda r: r.list_nodes(),
        lambda r: r.get_resource_claim("ml", "c"),
    ],
    ids=["list pods", "get pod", "list nodes", "get claim"],
)
def test_the_validate_fake_fails_any_read_validate_must_not_make(read: Any) -> None:
    with pytest.raises(AssertionError, match="must not"):
        read(validate_cluster())
