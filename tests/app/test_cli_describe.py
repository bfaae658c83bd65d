"""`kubectl dra describe` through click's CliRunner with an injected FakeCluster (no cluster)."""

from __future__ import annotations

import gc
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from kubernetes.client.exceptions import ApiException

from dracore.translate import REWRITTEN_ANNOTATION
from kubectl_dra.cli import cli
from kubectl_dra.errors import KubeError
from kubectl_dra.kube import _explain
from tests.builders import FakeCluster, cluster_pod, column, sample_cluster
from tests.builders.dra import make_class, sharing_config


def run(fake: Any, *args: str) -> Result:
    return CliRunner().invoke(cli, ["describe", *args], obj=fake, prog_name="kubectl dra")


def cells(result: Result, header: str) -> list[str]:
    return column(result.stdout, header)


def field(block: str, label: str) -> str:
    """The value of the first `Label:` line of a describe block."""
    for line in block.splitlines():
        if line.strip().startswith(f"{label}:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {label!r} in:\n{block}")


def test_template_claim_of_a_pod_shows_both_devices_with_attributes() -> None:
    result = run(sample_cluster(), "pod", "multi", "-o", "wide")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    assert cells(result, "ORIGIN") == ["template/two-gpus"] * 2
    assert cells(result, "RESOURCECLAIM") == ["multi-gpus-abcde"] * 2
    assert cells(result, "STATE") == ["reserved"] * 2
    assert cells(result, "DEVICE") == ["gpu-0", "gpu-1"]
    assert cells(result, "UUID") == ["GPU-0-0", "GPU-0-1"]
    assert cells(result, "MODEL") == ["NVIDIA A100-SXM4-80GB"] * 2
    assert cells(result, "MEMORY") == ["80Gi"] * 2


def test_named_claim_shared_by_two_pods_names_each_other() -> None:
    result = run(sample_cluster(), "pods", "share-a", "share-b", "-o", "wide")
    assert result.exit_code == 0, result.stderr
    assert cells(result, "ORIGIN") == ["claim/team-gpu"] * 2
    assert cells(result, "DEVICE") == ["gpu-2", "gpu-2"]
    assert cells(result, "SHARED-WITH") == ["pod/share-b", "pod/share-a"]
    blocks = run(sample_cluster(), "pods", "share-a", "share-b").stdout.split("\n\n")
    assert [field(b, "Other holders") for b in blocks] == ["pod/share-b", "pod/share-a"]

    claim = run(sample_cluster(), "claim", "team-gpu")
    assert claim.exit_code == 0, claim.stderr
    assert cells(claim, "RESERVED-FOR") == ["share-a,share-b"]


def test_kep5004_claim_is_shown_with_the_extended_resource_it_replaced() -> None:
    result = run(sample_cluster(), "pod", "legacy")
    assert result.exit_code == 0, result.stderr
    assert "  (extended resource, KEP-5004):" in result.stdout.splitlines()
    assert field(result.stdout, "Made from") == "extended-resource"
    assert field(result.stdout, "Containers") == "ctr0"
    assert field(result.stdout, "Original") == "ctr0 nvidia.com/gpu=1"


def test_time_sliced_claim_shows_strategy_and_both_containers() -> None:
    result = run(sample_cluster(), "pod", "sliced", "-o", "wide")
    assert result.exit_code == 0, result.stderr
    assert cells(result, "SHARING") == ["TimeSlicing (FromClaim)"]
    assert cells(result, "CONTAINERS") == ["a,b"]
    assert cells(result, "NODE") == ["node-1"]


def test_rewritten_pod_shows_its_original_request() -> None:
    result = run(sample_cluster(), "pods", "-l", "app=train", "-o", "json")
    assert result.exit_code == 0, result.stderr
    [pod] = json.loads(result.stdout)["items"]
    assert pod["name"] == "rewritten"
    assert pod["rewritten"]["containers"] == [
        {"container": "train", "resource": "nvidia.com/gpu", "count": 1}
    ]
    assert pod["rewritten"]["template"] == "kubectl-dra-aaaa"
    assert pod["claims"][0]["requests"][0]["original"] == pod["rewritten"]["containers"]


def test_describe_pods_lists_only_pods_using_dra() -> None:
    result = run(sample_cluster(), "pods")
    assert result.exit_code == 0
    assert "web" not in cells(result, "POD")
    assert "waiting" in cells(result, "POD")


def test_json_output_is_the_documented_structure() -> None:
    result = run(sample_cluster(), "pods", "-o", "json")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert (doc["apiVersion"], doc["kind"]) == ("kubectl-dra.io/v1alpha1", "PodReportList")
    item = doc["items"][0]
    assert set(item) == {
        "namespace",
        "name",
        "node",
        "phase",
        "unscheduled",
        "rewritten",
        "claims",
    }
    assert set(item["claims"][0]) == {
        "name",
        "origin",
        "source",
        "claim",
        "state",
        "reservedFor",
        "requests",
    }
    assert set(item["claims"][0]["requests"][0]) == {
        "request",
        "deviceClass",
        "count",
        "driver",
        "pool",
        "device",
        "node",
        "model",
        "uuid",
        "memory",
        "sharing",
        "containers",
        "original",
        "sharedWith",
    }


def test_pods_view_makes_a_constant_number_of_calls() -> None:
    fake = sample_cluster()
    assert run(fake, "pods", "-A").exit_code == 0
    # DeviceClasses only because a claim is not allocated yet (its sharing comes from its class)
    assert fake.calls == [
        "list pods",
        "list resourceclaims",
        "list resourceslices",
        "list deviceclasses",
    ]


def test_garbage_collector_runs_again_after_describe() -> None:
    assert gc.isenabled()
    assert run(sample_cluster(), "pods").exit_code == 0
    assert run(FakeCluster(error=KubeError("boom")), "pods").exit_code == 1
    assert gc.isenabled()


def test_cluster_view_and_namespace_view() -> None:
    fake = sample_cluster()
    result = run(fake, "-o", "yaml")
    assert result.exit_code == 0, result.stderr
    assert "kind: ClusterReport" in result.stdout
    doc = yaml.safe_load(result.stdout)
    assert [(n["node"], n["total"], n["allocated"], n["free"]) for n in doc["nodes"]] == [
        ("node-0", 4, 4, 0),
        ("node-1", 2, 2, 0),
    ]
    assert fake.calls == ["list resourceslices", "list resourceclaims"]

    table = run(sample_cluster(), "-n", "ns")
    assert table.exit_code == 0
    assert table.stdout.splitlines()[0].split() == [
        "NAMESPACE",
        "MODEL",
        "DEVICES",
        "CLAIMS",
        "PODS",
    ]


def test_group_flags_apply_to_the_subcommand() -> None:
    result = run(sample_cluster(), "-A", "-o", "json", "claims")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["kind"] == "ClaimReportList"
    assert "NAMESPACE" in run(sample_cluster(), "-A", "claims").stdout.splitlines()[0]


def test_an_explicit_subcommand_flag_wins_over_the_groups_even_when_it_is_the_default() -> None:
    # `-o table` is the default value, yet written out on the subcommand it must count.
    result = run(sample_cluster(), "-o", "json", "claims", "-o", "table")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.split()[0] == "CLAIM"  # a table's header, not a JSON document
    wide = run(sample_cluster(), "-o", "wide", "pods", "multi", "-o", "table")
    assert "UUID" not in wide.stdout.splitlines()[0]  # only -o wide shows the UUID column


def test_a_group_flag_given_in_the_environment_loses_to_the_command_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KUBECTL_DRA_DESCRIBE_OUTPUT", "json")
    assert run(sample_cluster(), "claims", "-o", "table").stdout.split()[0] == "CLAIM"
    assert json.loads(run(sample_cluster(), "claims").stdout)["kind"] == "ClaimReportList"


def test_node_view_shows_holders() -> None:
    result = run(sample_cluster(), "node", "node-1")
    assert result.exit_code == 0, result.stderr
    summary, devices = result.stdout.split("\n\n")
    assert summary.splitlines()[1].split()[-3:] == ["2", "2", "0"]
    assert "ns/sliced" in devices and "ns/rewritten" in devices
    assert "node-0" not in result.stdout


def test_empty_namespace_says_no_resources_found_on_stderr() -> None:
    result = run(FakeCluster(namespace="empty"), "pods")
    assert result.exit_code == 0
    assert result.stdout == ""
    assert result.stderr == "No resources found in empty namespace.\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("pod", "ghost"), 'Error: pod "ghost" not found in namespace "ns"\n'),
        (("claim", "ghost"), 'Error: resourceclaim "ghost" not found in namespace "ns"\n'),
        (("node", "ghost"), 'Error: no ResourceSlice publishes devices for node "ghost"\n'),
    ],
)
def test_not_found_is_one_error_line_and_exit_1(args: tuple[str, ...], message: str) -> None:
    result = run(sample_cluster(), *args)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == message


def test_forbidden_names_verb_resource_and_rbac_hint() -> None:
    body = json.dumps(
        {"message": 'resourceclaims.resource.k8s.io is forbidden: User "dev" cannot list'}
    )
    error = _explain(
        ApiException(status=403, reason="Forbidden", body=body),
        "list resourceclaims in namespace ns",
    )
    result = run(FakeCluster(error=error), "claims")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("Error: cannot list resourceclaims in namespace ns: forbidden")
    assert "check the RBAC permissions of your context" in result.stderr
    assert "Traceback" not in result.stderr


def test_dra_api_not_served_says_which_version_is_needed() -> None:
    body = json.dumps(
        {
            "message": "the server could not find the requested resource",
            "details": {"group": "resource.k8s.io", "kind": "resourceslices"},
        }
    )
    error = _explain(ApiException(status=404, reason="Not Found", body=body), "list resourceslices")
    result = run(FakeCluster(error=error), "nodes")
    assert result.exit_code == 1
    assert "DRA API (resource.k8s.io/v1) is not served" in result.stderr
    assert "Kubernetes 1.34+ is required" in result.stderr


def test_unknown_context_is_reported_without_a_cluster(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "dev", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "dev",
            }
        )
    )
    result = run(None, "--kubeconfig", str(kubeconfig), "--context", "nope")
    assert result.exit_code == 1
    assert "context 'nope' not found in kubeconfig" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("-n", "ns", "-A"),
        ("claims", "-l", "app=x"),
        ("pod", "p", "-A"),
        ("-o", "toml"),
    ],
)
def test_flag_misuse_is_a_usage_error(args: tuple[str, ...]) -> None:
    result = run(sample_cluster(), *args)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "Usage:" in result.stderr or "Error:" in result.stderr


def test_named_pod_without_dra_is_still_shown() -> None:
    result = run(FakeCluster(pods=[cluster_pod("web")]), "pod", "web")
    assert result.exit_code == 0
    assert field(result.stdout, "Name") == "web"
    assert "Claims:  <none>" in result.stdout.splitlines()


def test_help_reads_like_kubectl() -> None:
    result = run(None, "--help")
    assert result.exit_code == 0
    assert "Usage: kubectl dra describe" in result.stdout
    assert "kubectl dra describe pod trainer-0 -n ml" in result.stdout
    assert run(None, "pods", "--help").stdout.startswith("Usage: kubectl dra describe pods")


@pytest.mark.parametrize(
    ("alias", "kind"),
    [
        ("po", "PodReportList"),
        ("resourceclaims", "ClaimReportList"),
        ("resourceclaim", "ClaimReportList"),
        ("no", "NodeReportList"),
    ],
)
def test_kubectl_short_and_plural_names_work(alias: str, kind: str) -> None:
    result = run(sample_cluster(), alias, "-o", "json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["kind"] == kind


def test_wide_cluster_view_has_one_line_per_node_and_model() -> None:
    result = run(sample_cluster(), "-o", "wide")
    assert result.exit_code == 0
    nodes = result.stdout.split("\n\n")[0]
    assert nodes.splitlines()[0].split() == ["NODE", "MODEL", "TOTAL", "ALLOCATED", "FREE"]
    assert column(nodes, "MODEL") == ["NVIDIA A100-SXM4-80GB", "NVIDIA H100 80GB HBM3"]


# --- hostile data written by pod authors ------------------------------------------------------

ESC = "\x1b"
GOOD_RECORD = {
    "policy": "0123456789ab",
    "sharing": "Exclusive",
    "claim": "gpu",
    "template": "kubectl-dra-aaaa",
    "containers": [{"container": "train", "resource": "nvidia.com/gpu", "count": 1}],
}
HOSTILE_ANNOTATIONS = {
    "count-infinite": '{"claim": "gpu", "containers": [{"container": "a", "resource": "r", "count": 1e999}]}',
    "count-nan": '{"claim": "gpu", "containers": [{"container": "a", "resource": "r", "count": NaN}]}',
    "count-5000-digits": '{"containers": [{"container": "a", "resource": "r", "count": '
    + "9" * 5000
    + "}]}",
    "count-beyond-int64": '{"containers": [{"container": "a", "resource": "r", "count": '
    + str(2**64)
    + "}]}",
    "deep-json": "[" * 100_000 + "]" * 100_000,
    "containers-not-a-list": '{"containers": 5}',
    "container-not-an-object": '{"containers": ["a"]}',
    "not-json": "{not json",
    "a-json-string": '"text"',
    "claim-not-a-string": '{"claim": {"x": 1}}',
}


def _hostile_cluster(annotation: str) -> FakeCluster:
    """The sample cluster plus one pod carrying `annotation` as its rewritten record."""
    fake = sample_cluster()
    fake.pods.append(cluster_pod("hostile", annotations={REWRITTEN_ANNOTATION: annotation}))
    return fake


@pytest.mark.parametrize("annotation", HOSTILE_ANNOTATIONS.values(), ids=HOSTILE_ANNOTATIONS)
def test_a_hostile_annotation_is_shown_as_unreadable_and_the_rest_stays(annotation: str) -> None:
    result = run(_hostile_cluster(annotation), "pods", "-o", "wide")
    assert result.exit_code == 0, result.stderr
    pods = cells(result, "POD")
    # every pod of the sample cluster that uses DRA is still listed, and the hostile one too
    assert {"multi", "share-a", "legacy", "rewritten", "hostile"} <= set(pods)
    original = cells(result, "ORIGINAL")
    assert original[pods.index("hostile")] == "(unreadable annotation)"
    assert original[pods.index("rewritten")] == "train nvidia.com/gpu=1"

    document = json.loads(run(_hostile_cluster(annotation), "pods", "-o", "json").stdout)
    [hostile] = [p for p in document["items"] if p["name"] == "hostile"]
    assert hostile["rewritten"]["error"].startswith("unreadable annotation")


def test_terminal_escapes_in_author_data_are_shown_escaped_in_tables() -> None:
    record = {
        **GOOD_RECORD,
        "containers": [
            {"container": f"{ESC}[2J{ESC}]0;pwned\a", "resource": "nvidia.com/gpu", "count": 1}
        ],
    }
    fake = sample_cluster()
    fake.pods.append(
        cluster_pod(
            f"evil{ESC}[31m",
            resource_claims=[{"name": "gpu", "resourceClaimName": "team-gpu"}],
            containers={f"c\u202e{ESC}[0m": [{"name": "gpu"}]},
            annotations={REWRITTEN_ANNOTATION: json.dumps(record)},
        )
    )
    result = run(fake, "pods", "-o", "wide")
    assert result.exit_code == 0, result.stderr
    for control in (ESC, "\a", "\u202e"):
        assert control not in result.stdout
    assert "evil\\x1b[31m" in result.stdout
    assert "\\x1b[2J\\x1b]0;pwned\\x07" in result.stdout
    assert "c\\u202e\\x1b[0m" in result.stdout
    # json stays data: the same characters, escaped the way JSON escapes them
    document = run(fake, "pods", "-o", "json").stdout
    assert ESC not in document
    names = [p["name"] for p in json.loads(document)["items"]]
    assert f"evil{ESC}[31m" in names
    assert ESC not in run(fake, "pods", "-o", "yaml").stdout


def test_a_huge_annotation_value_is_shortened_in_the_table_and_whole_in_wide() -> None:
    record = dict(GOOD_RECORD)
    record["containers"] = [{"container": "x" * 5000, "resource": "nvidia.com/gpu", "count": 1}]
    fake = _hostile_cluster(json.dumps(record))
    table = CliRunner().invoke(
        cli, ["describe", "pods"], obj=fake, prog_name="kubectl dra", env={"COLUMNS": "120"}
    )
    assert table.exit_code == 0, table.stderr
    assert max(len(line) for line in table.stdout.splitlines()) <= 120
    wide = run(fake, "pods", "-o", "wide")
    assert "x" * 5000 + " nvidia.com/gpu=1" in wide.stdout  # -o wide has no width limit


def _pending_cluster(*, class_sharing: str | None, claim_sharing: str | None) -> FakeCluster:
    """A pod the scheduler cannot place, whose claim (not allocated) asks gpu.nvidia.com."""
    fake = sample_cluster()
    waiting = next(p for p in fake.pods if p["metadata"]["name"] == "waiting")
    waiting["status"]["conditions"] = [
        {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": "0/2 nodes are available: 2 cannot allocate all claims.",
        }
    ]
    claim = next(c for c in fake.claims if c["metadata"]["name"] == "waiting-gpu-1")
    if claim_sharing:
        config = sharing_config(claim_sharing)
        claim["spec"]["devices"]["config"] = [{"opaque": config["opaque"]}]
    gpu_class = make_class("gpu.nvidia.com")
    if class_sharing:
        gpu_class["spec"]["config"] = [{"opaque": sharing_config(class_sharing)["opaque"]}]
    fake.device_classes = [gpu_class]
    return fake


def test_describe_pod_block_shows_phase_scheduler_reason_and_each_request() -> None:
    result = run(_pending_cluster(class_sharing=None, claim_sharing=None), "pod", "waiting")
    assert result.exit_code == 0, result.stderr
    block = result.stdout
    assert [field(block, k) for k in ("Name", "Namespace", "Node", "Phase")] == [
        "waiting",
        "ns",
        "<none>",
        "Pending",
    ]
    assert field(block, "Scheduling") == (
        "Unschedulable: 0/2 nodes are available: 2 cannot allocate all claims."
    )
    assert field(block, "Made from") == "template big"
    assert field(block, "State") == "pending"
    assert (field(block, "Class"), field(block, "Count")) == ("gpu.nvidia.com", "8")
    assert field(block, "Sharing") == "driver default"
    running = run(sample_cluster(), "pod", "sliced").stdout
    assert "Scheduling" not in running
    assert field(running, "Sharing") == "TimeSlicing (from the claim)"
    assert field(running, "Containers") == "a,b"
    assert field(running, "UUID") == "GPU-1-0"


@pytest.mark.parametrize(
    ("class_sharing", "claim_sharing", "shown"),
    [
        ("MPS", None, "MPS (from the DeviceClass)"),
        ("MPS", "TimeSlicing", "TimeSlicing (from the claim)"),
        (None, None, "driver default"),
    ],
)
def test_sharing_of_a_claim_not_allocated_yet_comes_from_claim_then_class(
    class_sharing: str | None, claim_sharing: str | None, shown: str
) -> None:
    fake = _pending_cluster(class_sharing=class_sharing, claim_sharing=claim_sharing)
    assert field(run(fake, "pod", "waiting").stdout, "Sharing") == shown
    document = json.loads(run(fake, "claim", "waiting-gpu-1", "-o", "json").stdout)
    sharing = document["items"][0]["requests"][0]["sharing"]
    assert (sharing and sharing["strategy"]) == (shown.split()[0] if class_sharing else None)


def test_device_classes_are_not_listed_when_every_claim_is_allocated() -> None:
    fake = sample_cluster()
    fake.claims = [c for c in fake.claims if c["status"].get("allocation")]
    assert run(fake, "pods", "-A").exit_code == 0
    assert "list deviceclasses" not in fake.calls


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["pod/multi"], ["Name:       multi"]),
        (["pods/multi", "pod/sliced"], ["Name:       multi", "Name:       sliced"]),
        (["po", "multi", "pod/sliced"], ["Name:       multi", "Name:       sliced"]),
        (["claim/team-gpu", "-o", "wide"], ["team-gpu"]),
        (["node/node-1"], ["node-1"]),
    ],
)
def test_type_slash_name_works_as_kubectl_accepts_it(args: list[str], expected: list[str]) -> None:
    result = run(sample_cluster(), *args)
    assert result.exit_code == 0, result.stderr
    for text in expected:
        assert text in result.stdout
    if args[0].startswith("node/"):
        assert "node-0" not in result.stdout


def test_type_slash_name_of_another_kind_is_a_usage_error() -> None:
    result = run(sample_cluster(), "pod", "claim/team-gpu")
    assert result.exit_code == 2
    assert "describe pod takes pod names" in result.stderr


class _ClassesForbidden(FakeCluster):
    def list_device_classes(self) -> list[dict[str, Any]]:
        raise KubeError("cannot list deviceclasses: forbidden (403)\x1b[2J")


def test_forbidden_device_classes_are_a_warning_and_the_view_goes_on() -> None:
    fake = _pending_cluster(class_sharing="MPS", claim_sharing=None)
    limited = _ClassesForbidden(pods=fake.pods, claims=fake.claims, slices=fake.slices)
    result = run(limited, "pod", "waiting")
    assert result.exit_code == 0
    assert field(result.stdout, "Sharing") == "driver default"
    assert result.stderr.startswith("Warning: cannot list deviceclasses: forbidden (403)\\x1b[2J;")
    assert "\x1b" not in result.stderr


def test_an_error_quoting_a_name_shows_its_controls_escaped() -> None:
    result = run(sample_cluster(), "pod", "evil\x1b]0;pwned\x07")
    assert result.exit_code == 1
    assert result.stderr == 'Error: pod "evil\\x1b]0;pwned\\x07" not found in namespace "ns"\n'
