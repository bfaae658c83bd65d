"""e2e for `kubectl dra validate`: --cluster against the real control plane and its simulated
GPU nodes (hack/fakegpu.py), and agreement with the API server's own validation (dry run)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from hack import fakegpu
from kubectl_dra.cli import cli
from tests.e2e.e2e_support import ROOT, E2ECluster

pytestmark = pytest.mark.e2e

NV = 'device.attributes["gpu.nvidia.com"]'


def validate(k8s: E2ECluster, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(
        cli,
        ["validate", "--cluster", "--kubeconfig", str(k8s.kubeconfig), "-o", "json", *args],
        input=stdin,
        prog_name="kubectl dra",
    )


def findings(result: Result) -> list[dict[str, str]]:
    data: list[dict[str, str]] = json.loads(result.stdout)
    return data


def claim(namespace: str, *requests: dict[str, Any], name: str = "c") -> dict[str, Any]:
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"devices": {"requests": list(requests)}},
    }


def exactly(name: str, device_class: str, *expressions: str, **fields: Any) -> dict[str, Any]:
    selectors = [{"cel": {"expression": e}} for e in expressions]
    return {
        "name": name,
        "exactly": {"deviceClassName": device_class, **fields}
        | ({"selectors": selectors} if selectors else {}),
    }


def published(k8s: E2ECluster, driver: str, **where: Any) -> tuple[int, int]:
    """(devices, nodes) the fixtures published for `driver` (full GPUs only for NVIDIA)."""
    nodes = [n for n in k8s.nodes if n.driver == driver]
    nodes = [n for n in nodes if all(getattr(n.model, k, None) == v for k, v in where.items())]
    devices = sum(n.gpus - len(n.mig_gpus) for n in nodes)
    return devices, len([n for n in nodes if n.gpus - len(n.mig_gpus)])


def test_examples_report_the_devices_the_cluster_publishes(k8s: E2ECluster) -> None:
    devices, nodes = published(k8s, fakegpu.EXAMPLE_DRIVER)
    paths = sorted((ROOT / "examples").glob("0[1-3]-*.yaml"))
    result = validate(k8s, *[a for p in paths for a in ("-f", str(p))])
    assert result.exit_code == 0, result.output
    infos = {f["message"] for f in findings(result) if f["severity"] == "info"}
    assert infos == {
        f"request '{name}': {devices} devices match on {nodes} nodes"
        for name in ("gpu-1", "gpu-2", "gpu")
    }
    assert [f for f in findings(result) if f["severity"] != "info"] == []


def h100_request(product: str) -> dict[str, Any]:
    return exactly(
        "h100", "gpu.nvidia.com", f'"productName" in {NV} && {NV}.productName == "{product}"'
    )


BIG_REQUEST = exactly(
    "big",
    "gpu.nvidia.com",
    '"memory" in device.capacity["gpu.nvidia.com"] && '
    'device.capacity["gpu.nvidia.com"].memory.compareTo(quantity("80Gi")) >= 0',
)


def test_nvidia_selectors_count_matching_devices_per_model(k8s: E2ECluster, namespace: str) -> None:
    h100 = fakegpu.H100_80GB.product_name
    devices, nodes = published(k8s, fakegpu.NVIDIA_DRIVER, product_name=h100)
    all_devices, all_nodes = published(k8s, fakegpu.NVIDIA_DRIVER)
    h100_claim = claim(namespace, h100_request(h100), name="h100")
    big_claim = claim(namespace, BIG_REQUEST, name="big")
    result = validate(k8s, "-f", "-", stdin=yaml.safe_dump_all([h100_claim, big_claim]))
    assert result.exit_code == 0, result.output
    infos = [f["message"] for f in findings(result) if f["severity"] == "info"]
    assert infos == [
        f"request 'h100': {devices} devices match on {nodes} node{'s' if nodes != 1 else ''}",
        # The A100s publish 81920 MiB = 80Gi, the H100s 81559 MiB: below 80Gi.
        f"request 'big': {all_devices - devices} devices match on {all_nodes - nodes} nodes",
    ]


def test_requests_no_node_can_serve_together_are_an_error(k8s: E2ECluster, namespace: str) -> None:
    # Each fits alone (H100 node; A100 nodes), but one claim is allocated on one node.
    manifest = claim(namespace, h100_request(fakegpu.H100_80GB.product_name), BIG_REQUEST)
    result = validate(k8s, "-f", "-", stdin=yaml.safe_dump(manifest))
    assert result.exit_code == 1
    [error] = [f for f in findings(result) if f["severity"] == "error"]
    assert error["field"] == "spec.devices.requests"
    assert "fit one by one but not together" in error["message"]


def test_a_product_that_does_not_exist_is_an_error(k8s: E2ECluster, namespace: str) -> None:
    manifest = claim(
        namespace,
        exactly("gpu", "gpu.nvidia.com", f'"productName" in {NV} && {NV}.productName == "B200"'),
    )
    result = validate(k8s, "-f", "-", stdin=yaml.safe_dump(manifest))
    assert result.exit_code == 1
    [error] = [f for f in findings(result) if f["severity"] == "error"]
    assert error["field"] == "spec.devices.requests[0].exactly.selectors"
    assert "no device in the cluster matches" in error["message"]
    assert "request selector 0 keeps 0 of" in error["message"]


def test_a_missing_device_class_and_an_impossible_count_are_errors(
    k8s: E2ECluster, namespace: str
) -> None:
    per_node = max(n.gpus for n in k8s.nodes if n.driver == fakegpu.EXAMPLE_DRIVER)
    manifest = claim(
        namespace,
        exactly("a", "no-such-class.example.com"),
        exactly("b", "gpu.example.com", count=per_node + 1),
    )
    result = validate(k8s, "-f", "-", stdin=yaml.safe_dump(manifest))
    assert result.exit_code == 1
    errors = {f["field"]: f["message"] for f in findings(result) if f["severity"] == "error"}
    assert (
        "does not exist in the cluster"
        in errors["spec.devices.requests[0].exactly.deviceClassName"]
    )
    assert (
        f"needs {per_node + 1} devices on one node"
        in errors["spec.devices.requests[1].exactly.count"]
    )


# --- agreement with the API server ------------------------------------------------------------


def server_accepts(k8s: E2ECluster, manifest: dict[str, Any]) -> tuple[bool, str]:
    done = k8s.kubectl(
        "create", "--dry-run=server", "-f", "-", check=False, input=yaml.safe_dump(manifest)
    )
    return done.returncode == 0, done.stderr


def test_what_validate_accepts_the_api_server_accepts(k8s: E2ECluster, namespace: str) -> None:
    manifest = claim(
        namespace,
        exactly(
            "gpu", "gpu.nvidia.com", f'"architecture" in {NV} && {NV}.architecture == "Hopper"'
        ),
        exactly("all", "gpu.example.com", allocationMode="All"),
    )
    manifest["spec"]["devices"]["constraints"] = [
        {"requests": ["gpu"], "matchAttribute": "resource.kubernetes.io/pcieRoot"}
    ]
    offline = CliRunner().invoke(cli, ["validate", "-f", "-"], input=yaml.safe_dump(manifest))
    assert offline.exit_code == 0, offline.output
    accepted, stderr = server_accepts(k8s, manifest)
    assert accepted, stderr


BROKEN = {
    "request name not a DNS label": (
        lambda ns: claim(ns, exactly("GPU_1", "gpu.example.com")),
        "spec.devices.requests[0].name",
    ),
    "count with allocationMode All": (
        lambda ns: claim(ns, exactly("gpu", "gpu.example.com", allocationMode="All", count=2)),
        "spec.devices.requests[0].exactly.count",
    ),
    "CEL syntax error": (
        lambda ns: claim(ns, exactly("gpu", "gpu.example.com", 'device.driver == "a" &&')),
        "spec.devices.requests[0].exactly.selectors[0].cel.expression",
    ),
    "33 selectors": (
        lambda ns: claim(ns, exactly("gpu", "gpu.example.com", *["true"] * 33)),
        "spec.devices.requests[0].exactly.selectors",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_what_validate_rejects_the_api_server_rejects(
    k8s: E2ECluster, namespace: str, case: str
) -> None:
    build, field = BROKEN[case]
    manifest = build(namespace)
    offline = CliRunner().invoke(
        cli, ["validate", "-f", "-", "-o", "json"], input=yaml.safe_dump(manifest)
    )
    assert offline.exit_code == 1
    assert field in [f["field"] for f in json.loads(offline.stdout) if f["severity"] == "error"]
    accepted, stderr = server_accepts(k8s, manifest)
    assert not accepted
    assert "Invalid" in stderr or "invalid" in stderr, stderr
