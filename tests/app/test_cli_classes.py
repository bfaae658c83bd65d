"""`kubectl dra classes` through click's CliRunner, and validate's DeviceClass rules."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from dracore.classes import generate_classes
from dracore.policy import Policy
from kubectl_dra.cli import cli
from tests.builders import FakeCluster, assert_valid, make_class, make_device, make_slice

ROOT = Path(__file__).resolve().parents[2]
NVIDIA_GPU = (
    'device.driver == "gpu.nvidia.com" && device.attributes["gpu.nvidia.com"].type == "gpu"'
)


class VersionedCluster(FakeCluster):
    """A FakeCluster that also tells its release, as KubeGateway.server_version does."""

    def __init__(self, *, version: str = "v1.37.2", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.version = version

    def server_version(self) -> str:
        self._call("get version")
        return self.version


def invoke(*args: str, reader: FakeCluster | None = None, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), obj=reader, input=stdin, prog_name="kubectl dra")


def nvidia_slices() -> list[dict[str, Any]]:
    return [
        make_slice("gpu-0", [make_device(f"gpu-{i}", uuid=f"GPU-0-{i}") for i in range(2)]),
        make_slice(
            "mig-0",
            [make_device(f"mig-{i}", type_="mig", profile="1g.10gb") for i in range(3)],
        ),
    ]


def installed(
    *, mig: Sequence[str] = ("1g.10gb",), stamp: str = "2026-01-01T00:00:00Z"
) -> list[dict[str, Any]]:
    """The classes `kubectl dra classes` makes for the built-in policy, as the API returns them."""
    manifests = generate_classes(Policy.default(), mig_profiles=mig).manifests
    for manifest in manifests:
        manifest["metadata"]["creationTimestamp"] = stamp
    return manifests


def cluster(
    classes: Sequence[Mapping[str, Any]] = (), *, version: str = "v1.37.2", slices: Any = None
) -> VersionedCluster:
    return VersionedCluster(
        version=version,
        device_classes=[make_class("gpu.nvidia.com", NVIDIA_GPU), *classes],
        slices=nvidia_slices() if slices is None else slices,
        forbidden=("list pods", "list nodes", "list resourceclaims"),
    )


def write_policy(tmp_path: Path, **spec: Any) -> Path:
    path = tmp_path / "policy.yaml"
    document = {"apiVersion": "kubectl-dra.io/v1alpha1", "kind": "GPUPolicy", "spec": spec}
    path.write_text(yaml.safe_dump(document))
    return path


def lines(result: Result) -> list[list[str]]:
    return [line.split(None, 3) for line in result.stdout.splitlines()]


# --- printing the classes -----------------------------------------------------------------------


def test_prints_the_builtin_policy_classes_as_yaml_with_notes_on_stderr() -> None:
    result = invoke("classes")
    assert result.exit_code == 0, result.output
    documents = list(yaml.safe_load_all(result.stdout))
    assert [d["metadata"]["name"] for d in documents] == [
        "kubectl-dra-gpu",
        "kubectl-dra-gpu.shared-timeslicing",
    ]
    assert documents[0]["spec"]["extendedResourceName"] == "nvidia.com/gpu"
    assert_valid(*documents)
    assert "Note: nvidia.com/mig-*: no MIG profiles given" in result.stderr
    assert "Note" not in result.stdout


def test_json_is_a_list_and_mig_profiles_add_classes() -> None:
    result = invoke("classes", "--mig-profile", "1g.10gb", "--mig-profile", "2g.20gb", "-o", "json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["kind"] == "List"
    names = [item["metadata"]["name"] for item in document["items"]]
    assert names[2:] == ["kubectl-dra-mig-1g.10gb", "kubectl-dra-mig-2g.20gb"]
    assert result.stderr == ""


def test_a_policy_file_with_namespace_sharing_adds_classes(tmp_path: Path) -> None:
    policy = write_policy(
        tmp_path,
        resources=[{"name": "nvidia.com/gpu", "deviceClassName": "gpu.nvidia.com"}],
        namespaces=[{"names": ["ml"], "sharing": "MPS"}],
    )
    result = invoke("classes", "--policy", str(policy))
    assert result.exit_code == 0, result.output
    documents = list(yaml.safe_load_all(result.stdout))
    assert [(d["metadata"]["name"], d["spec"].get("extendedResourceName")) for d in documents] == [
        ("kubectl-dra-gpu", "nvidia.com/gpu"),
        ("kubectl-dra-gpu-mps", None),
    ]


@pytest.mark.parametrize("version", ["1.34", "v1.35.3"])
def test_before_136_extended_resource_name_is_left_out_unless_asked(version: str) -> None:
    result = invoke("classes", "--kubernetes-version", version)
    assert result.exit_code == 0, result.output
    assert all("extendedResourceName" not in d["spec"] for d in yaml.safe_load_all(result.stdout))
    assert "DRAExtendedResource" in result.stderr
    forced = invoke("classes", "--kubernetes-version", version, "--extended-resource-names")
    assert forced.exit_code == 0
    first = next(yaml.safe_load_all(forced.stdout))
    assert first["spec"]["extendedResourceName"] == "nvidia.com/gpu"
    assert "DRAExtendedResource" not in forced.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-o", "text"], "-o text is the findings table of --cluster"),
        (["--kubernetes-version", "latest"], "is not a Kubernetes release"),
        (["-o", "xml"], "'xml' is not one of"),
    ],
)
def test_usage_errors_exit_2(args: list[str], message: str) -> None:
    result = invoke("classes", *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert result.stdout == ""


def test_a_broken_policy_is_one_line_and_exit_1(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("apiVersion: kubectl-dra.io/v1alpha1\nkind: GPUPolicy\nspec: {mode: Often}\n")
    result = invoke("classes", "--policy", str(policy))
    assert result.exit_code == 1
    assert result.stderr.startswith(f'Error: {policy}: spec.mode: "Often" is not one of')
    assert "Traceback" not in result.output


# --- --cluster ----------------------------------------------------------------------------------


def test_cluster_without_our_classes_reports_each_missing_and_exits_1() -> None:
    reader = cluster()
    result = invoke("classes", "--cluster", reader=reader)
    assert result.exit_code == 1
    missing = [line[1] for line in lines(result) if line[0] == "error" and "missing" in line[3]]
    # The published profile 1g.10gb is found in the slices, so its class is expected too.
    assert missing == [
        "DeviceClass/kubectl-dra-gpu",
        "DeviceClass/kubectl-dra-gpu.shared-timeslicing",
        "DeviceClass/kubectl-dra-mig-1g.10gb",
    ]
    assert sorted(reader.calls) == ["get version", "list deviceclasses", "list resourceslices"]


def test_cluster_with_our_classes_in_place_exits_0_and_counts_devices() -> None:
    result = invoke("classes", "--cluster", reader=cluster(installed()))
    assert result.exit_code == 0, result.output
    infos = {line[1]: line[3] for line in lines(result) if line[0] == "info"}
    assert infos["DeviceClass/kubectl-dra-gpu"].startswith(
        "2 of 5 published devices match, on 1 nodes"
    )
    assert "nvidia.com/gpu" in infos["DeviceClass/kubectl-dra-gpu"]
    assert infos["DeviceClass/kubectl-dra-mig-1g.10gb"].startswith("3 of 5")
    assert not [line for line in lines(result) if line[0] == "error"]


def test_a_changed_class_is_reported_field_by_field() -> None:
    changed = installed()
    changed[0]["spec"]["selectors"] = [{"cel": {"expression": "true"}}]
    result = invoke("classes", "--cluster", "-o", "json", reader=cluster(changed))
    assert result.exit_code == 1
    findings = json.loads(result.stdout)
    (different,) = [f for f in findings if f["severity"] == "error"]
    assert (different["object"], different["field"]) == (
        "DeviceClass/kubectl-dra-gpu",
        "spec.selectors",
    )
    assert 'cluster: [{"cel":{"expression":"true"}}]' in different["message"]


def test_an_older_server_wants_no_extended_resource_name_on_our_classes() -> None:
    result = invoke("classes", "--cluster", reader=cluster(installed(), version="v1.35.2"))
    assert result.exit_code == 1
    errors = [(line[1], line[2]) for line in lines(result) if line[0] == "error"]
    assert errors == [
        ("DeviceClass/kubectl-dra-gpu", "spec.extendedResourceName"),
        ("DeviceClass/kubectl-dra-gpu.shared-timeslicing", "spec.extendedResourceName"),
        ("DeviceClass/kubectl-dra-mig-1g.10gb", "spec.extendedResourceName"),
    ]
    assert "DRAExtendedResource" in result.stderr


@pytest.mark.parametrize(
    ("driver_class_created", "severity", "serving"),
    [
        ("2026-06-01T00:00:00Z", "error", "DeviceClass gpu.nvidia.com, created 2026-06-01"),
        ("2025-06-01T00:00:00Z", "warning", "this one, created 2026-01-01"),
        # A tie (timestamps have whole seconds): the first name wins, the driver's.
        ("2026-01-01T00:00:00Z", "error", "DeviceClass gpu.nvidia.com"),
    ],
)
def test_a_driver_class_claiming_the_same_name_is_a_conflict_with_the_serving_class_named(
    driver_class_created: str, severity: str, serving: str
) -> None:
    reader = cluster(installed())
    driver_class = reader.device_classes[0]
    driver_class["spec"]["extendedResourceName"] = "nvidia.com/gpu"
    driver_class["metadata"]["creationTimestamp"] = driver_class_created
    result = invoke("classes", "--cluster", reader=reader)
    (conflict,) = [line for line in lines(result) if line[2] == "spec.extendedResourceName"]
    assert conflict[:2] == [severity, "DeviceClass/kubectl-dra-gpu"]
    assert "DeviceClass gpu.nvidia.com also claims nvidia.com/gpu" in conflict[3]
    assert serving in conflict[3]
    assert result.exit_code == (1 if severity == "error" else 0)


def test_a_class_that_selects_no_published_device_is_a_warning() -> None:
    slices = [make_slice("mig-0", [make_device("mig-0", type_="mig", profile="1g.10gb")])]
    result = invoke("classes", "--cluster", reader=cluster(installed(), slices=slices))
    assert result.exit_code == 0, result.output
    warnings = {line[1]: line[3] for line in lines(result) if line[0] == "warning"}
    assert warnings["DeviceClass/kubectl-dra-gpu"] == (
        "matches none of the 1 published devices: pods asking for nvidia.com/gpu would stay Pending"
    )


def test_a_class_of_ours_the_policy_no_longer_makes_is_a_warning() -> None:
    stale = installed(mig=("7g.80gb",))[-1]
    assert stale["metadata"]["name"] == "kubectl-dra-mig-7g.80gb"
    result = invoke("classes", "--cluster", reader=cluster([*installed(), stale]))
    assert result.exit_code == 0, result.output
    (warning,) = [
        line for line in lines(result) if line[1] == "DeviceClass/kubectl-dra-mig-7g.80gb"
    ]
    assert warning[0] == "warning" and "no longer needs it" in warning[3]


def test_cluster_errors_are_one_line() -> None:
    from kubectl_dra.errors import KubeError

    reader = VersionedCluster(error=KubeError("cannot list deviceclasses: forbidden (403)"))
    result = invoke("classes", "--cluster", reader=reader)
    assert result.exit_code == 1
    assert result.stderr == "Error: cannot list deviceclasses: forbidden (403)\n"


# --- validate on DeviceClass files ----------------------------------------------------------------


def device_class(name: str, claimed: str | None = None, **spec: Any) -> dict[str, Any]:
    obj = make_class(name, NVIDIA_GPU)
    if claimed is not None:
        obj["spec"]["extendedResourceName"] = claimed
    obj["spec"].update(spec)
    return obj


def validate(*objects: dict[str, Any], reader: FakeCluster | None = None) -> Result:
    args = ["validate", "-f", "-", "-o", "json", *(["--cluster"] if reader else [])]
    return invoke(*args, reader=reader, stdin=yaml.safe_dump_all(objects))


def findings_of(result: Result, field: str) -> list[tuple[str, str, str]]:
    return [
        (f["severity"], f["object"], f["message"])
        for f in json.loads(result.stdout)
        if f["field"] == field
    ]


@pytest.mark.parametrize(
    "claimed", ["gpu", "kubernetes.io/gpu", "deviceclass.resource.kubernetes.io/x", "a.io/b+c"]
)
def test_validate_refuses_a_name_the_api_server_refuses(claimed: str) -> None:
    result = validate(device_class("mine", claimed))
    assert result.exit_code == 1
    ((severity, _, message),) = findings_of(result, "spec.extendedResourceName")
    assert severity == "error" and "not an extended resource name the API server accepts" in message


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        # Applied together they tie on the timestamp, and the first name serves.
        (("b-class", "a-class"), ("warning", "DeviceClass/a-class", "this one")),
        (("a-class", "b-class"), ("error", "DeviceClass/b-class", "DeviceClass a-class")),
    ],
)
def test_validate_finds_two_input_classes_claiming_one_name(
    order: tuple[str, str], expected: tuple[str, str, str]
) -> None:
    result = validate(*(device_class(name, "nvidia.com/gpu") for name in order))
    ((severity, obj, message),) = findings_of(result, "spec.extendedResourceName")
    assert (severity, obj) == expected[:2]
    assert f"the first by name): {expected[2]}" in message


def test_validate_warns_when_a_sharing_class_claims_a_name() -> None:
    config = copy.deepcopy(installed()[1]["spec"]["config"])
    result = validate(device_class("ts", "nvidia.com/gpu", config=config))
    (finding,) = findings_of(result, "spec.extendedResourceName")
    assert finding[0] == "warning"
    assert "deviceclass.resource.kubernetes.io/ts" in finding[2]


def test_validate_cluster_finds_a_cluster_class_claiming_the_same_name() -> None:
    existing = device_class("gpu.nvidia.com", "nvidia.com/gpu")
    existing["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    reader = FakeCluster(device_classes=[existing], slices=nvidia_slices())
    result = validate(device_class("kubectl-dra-gpu", "nvidia.com/gpu"), reader=reader)
    ((severity, _, message),) = findings_of(result, "spec.extendedResourceName")
    assert severity == "warning"  # not created yet: once applied it is the newest
    assert "DeviceClass gpu.nvidia.com also claims nvidia.com/gpu" in message


def test_validate_accepts_the_generated_classes() -> None:
    result = validate(*generate_classes(Policy.default(), mig_profiles=["1g.10gb"]).manifests)
    assert result.exit_code == 0, result.output
    assert findings_of(result, "spec.extendedResourceName") == []


def test_validate_notes_a_class_name_too_long_for_its_implicit_name() -> None:
    result = validate(device_class("a" * 64))
    ((severity, _, message),) = findings_of(result, "metadata.name")
    assert severity == "info" and "deviceclass.resource.kubernetes.io" in message


def test_a_rule_selector_that_fails_on_published_devices_is_an_error(tmp_path: Path) -> None:
    unguarded = 'device.attributes["gpu.nvidia.com"].rack == "r1"'  # no device has `rack`
    policy = write_policy(
        tmp_path,
        resources=[
            {"name": "nvidia.com/gpu", "deviceClassName": "gpu.nvidia.com", "selector": unguarded}
        ],
    )
    printed = invoke("classes", "--policy", str(policy))
    applied = list(yaml.safe_load_all(printed.stdout))
    result = invoke("classes", "--policy", str(policy), "--cluster", reader=cluster(applied))
    assert result.exit_code == 1
    (error,) = [line for line in lines(result) if line[0] == "error"]
    assert error[1:3] == ["DeviceClass/kubectl-dra-gpu", "spec.selectors[1]"]
    assert "rack" in error[3] and "stops allocating" in error[3]
    assert any("matches none" in line[3] for line in lines(result) if line[0] == "warning")


def test_validate_cluster_keeps_the_age_of_a_class_the_input_replaces() -> None:
    """Re-applying our older class next to a newer driver class: the driver's serves."""
    ours = device_class("kubectl-dra-gpu", "nvidia.com/gpu")
    ours["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    driver = device_class("gpu.nvidia.com", "nvidia.com/gpu")
    driver["metadata"]["creationTimestamp"] = "2026-02-01T00:00:00Z"
    reader = FakeCluster(device_classes=[ours, driver], slices=nvidia_slices())
    result = validate(device_class("kubectl-dra-gpu", "nvidia.com/gpu"), reader=reader)
    ((severity, _, message),) = findings_of(result, "spec.extendedResourceName")
    assert severity == "error"
    assert "DeviceClass gpu.nvidia.com, created 2026-02-01T00:00:00Z" in message
