"""validate: every rule over dict manifests, and cluster checks over dict slices.

One table per rule; long because the tables are.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kubectl_dra.documents import Document, load_documents
from kubectl_dra.validate import (
    ClusterSnapshot,
    Finding,
    check_schema,
    format_findings,
    is_checked,
    summarize,
    validate_documents,
)
from tests.builders import (
    FakeCluster,
    allocated_claim,
    example_device,
    example_slice,
    make_claim,
    make_claim_pod,
    make_class,
    make_template,
    request,
    selector,
    validate_cluster,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").rglob("*.yaml"))
MODEL = 'device.attributes["gpu.example.com"].model'


def run(*objects: dict[str, Any], cluster: ClusterSnapshot | None = None) -> list[Finding]:
    documents = [Document("test.yaml", i + 1, o) for i, o in enumerate(objects)]
    return validate_documents(documents, cluster=cluster)


def errors(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity == "error"]


def snapshot(reader: FakeCluster | None = None) -> ClusterSnapshot:
    return ClusterSnapshot.from_reader(reader or validate_cluster())


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_example_is_accepted(path: Path) -> None:
    findings = validate_documents(load_documents([str(path)]))
    assert errors(findings) == []
    assert [f for f in findings if f.severity == "warning"] == []


def test_the_policy_configmap_is_checked_by_the_loader() -> None:
    documents = load_documents([str(ROOT / "examples" / "policy-example-driver.yaml")])
    assert validate_documents(documents) == []
    assert is_checked(documents[0].object)
    assert "1 object checked: no problems found" in summarize([], documents=documents)


def test_legacy_pods_get_an_info_pointing_at_convert() -> None:
    path = ROOT / "examples" / "legacy" / "02-intra-pod-sharing.yaml"
    findings = validate_documents(load_documents([str(path)]))
    assert [(f.severity, f.object, f.field) for f in findings] == [
        ("info", "Pod/gpu0-legacy/pod0", "spec.containers[0].resources.limits"),
        ("info", "Pod/gpu0-legacy/pod0", "spec.containers[1].resources.limits"),
    ]
    assert f"kubectl dra convert -f {path}" in findings[0].message
    assert "1 nvidia.com/gpu" in findings[0].message


# --- one broken variant per rule: (object factory, field path, words of the message) ---------


def _with(obj: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    change(obj)
    return obj


def _requests(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = obj["spec"]["spec"] if obj["kind"] == "ResourceClaimTemplate" else obj["spec"]
    requests: list[dict[str, Any]] = spec["devices"]["requests"]
    return requests


R0 = "spec.devices.requests[0]"
BROKEN: list[tuple[str, Callable[[], list[dict[str, Any]]], str, str]] = [
    # rule 1: structure
    (
        "unknown field",
        lambda: [make_claim(request(deviceClass="gpu.example.com"))],
        f"{R0}.exactly.deviceClass",
        "unknown field 'deviceClass'",
    ),
    (
        "missing deviceClassName",
        lambda: [make_claim({"name": "gpu", "exactly": {"count": 1}})],
        f"{R0}.exactly.deviceClassName",
        "is required",
    ),
    (
        "wrong type",
        lambda: [make_claim(request(count="two"))],
        f"{R0}.exactly.count",
        "must be an integer",
    ),
    (
        "exactly and firstAvailable",
        lambda: [
            make_claim(
                {
                    **request(),
                    "firstAvailable": [{"name": "a", "deviceClassName": "gpu.example.com"}],
                }
            )
        ],
        R0,
        "sets both exactly and firstAvailable",
    ),
    (
        "neither exactly nor firstAvailable",
        lambda: [make_claim({"name": "gpu"})],
        R0,
        "must set exactly one of exactly",
    ),
    (
        "count with All",
        lambda: [make_claim(request(allocationMode="All", count=2))],
        f"{R0}.exactly.count",
        "must not be set with allocationMode All",
    ),
    (
        "unknown allocationMode",
        lambda: [make_claim(request(allocationMode="Some"))],
        f"{R0}.exactly.allocationMode",
        "unknown mode 'Some'",
    ),
    (
        "template metadata beyond labels",
        lambda: [_with(make_template(), lambda t: t["spec"].update(metadata={"name": "x"}))],
        "spec.metadata.name",
        "only labels and annotations",
    ),
    # rule 2: the API server's limits
    (
        "request name not a DNS label",
        lambda: [make_claim(request("GPU_1"))],
        f"{R0}.name",
        "not a valid request name (a DNS label",
    ),
    (
        "duplicate request names",
        lambda: [make_claim(request("a"), request("a"))],
        "spec.devices.requests[1].name",
        "duplicate request name 'a'",
    ),
    (
        "subrequest name not a DNS label",
        lambda: [
            make_claim(
                {"name": "gpu", "firstAvailable": [{"name": "A", "deviceClassName": "x.example"}]}
            )
        ],
        f"{R0}.firstAvailable[0].name",
        "not a valid subrequest name",
    ),
    (
        "33 requests",
        lambda: [make_claim(*(request(f"r{i}") for i in range(33)))],
        "spec.devices.requests",
        "at most 32",
    ),
    (
        "33 selectors",
        lambda: [make_claim(request(selectors=[selector("true")] * 33))],
        f"{R0}.exactly.selectors",
        "at most 32",
    ),
    (
        "33 configs",
        lambda: [
            make_claim(config=[{"opaque": {"driver": "gpu.example.com", "parameters": {}}}] * 33)
        ],
        "spec.devices.config",
        "at most 32",
    ),
    (
        "count zero",
        lambda: [make_claim(request(count=0))],
        f"{R0}.exactly.count",
        "must be greater than 0",
    ),
    (
        "count above 32",
        lambda: [make_claim(request(count=33))],
        f"{R0}.exactly.count",
        "can never be allocated",
    ),
    (
        "counts adding up above 32",
        lambda: [make_claim(request("a", count=20), request("b", count=20))],
        "spec.devices.requests",
        "add up to 40 devices",
    ),
    (
        "opaque parameters over 10 KiB",
        lambda: [
            make_claim(
                config=[{"opaque": {"driver": "gpu.example.com", "parameters": {"x": "a" * 10240}}}]
            )
        ],
        "spec.devices.config[0].opaque.parameters",
        "allows at most 10240",
    ),
    (
        "opaque parameters not an object",
        lambda: [make_claim(config=[{"opaque": {"driver": "gpu.example.com", "parameters": [1]}}])],
        "spec.devices.config[0].opaque.parameters",
        "must be an object",
    ),
    (
        "driver name not a DNS subdomain",
        lambda: [make_claim(config=[{"opaque": {"driver": "GPU_Driver", "parameters": {}}}])],
        "spec.devices.config[0].opaque.driver",
        "not a valid driver name",
    ),
    (
        "config for an unknown request",
        lambda: [
            make_claim(
                config=[
                    {
                        "requests": ["gpux"],
                        "opaque": {"driver": "gpu.example.com", "parameters": {}},
                    }
                ]
            )
        ],
        "spec.devices.config[0].requests[0]",
        "names request 'gpux', which the claim does not have (requests: gpu)",
    ),
    (
        "matchAttribute without a domain",
        lambda: [make_claim(constraints=[{"matchAttribute": "pcieRoot"}])],
        "spec.devices.constraints[0].matchAttribute",
        "fully qualified attribute name",
    ),
    (
        "DeviceClass name not a DNS subdomain",
        lambda: [make_class("GPU_Class")],
        "metadata.name",
        "not a valid DeviceClass name",
    ),
    (
        "deviceClassName not a DNS subdomain",
        lambda: [make_claim({"name": "gpu", "exactly": {"deviceClassName": "GPU"}})],
        f"{R0}.exactly.deviceClassName",
        "not a valid DeviceClass name",
    ),
    (
        "CEL over 10 KiB",
        lambda: [make_claim(request(selectors=[selector(f'"{"a" * 10240}" == "a"')]))],
        f"{R0}.exactly.selectors[0].cel.expression",
        "at most 10240",
    ),
    # rule 3: cross references
    (
        "container names an unknown pod claim",
        lambda: [make_claim_pod(claims=[{"name": "gpus"}])],
        "spec.containers[0].resources.claims[0].name",
        "'gpus' must be one of the names in spec.resourceClaims (gpu)",
    ),
    (
        "container names a request the template lacks",
        lambda: [make_template(), make_claim_pod(claims=[{"name": "gpu", "request": "big"}])],
        "spec.containers[0].resources.claims[0].request",
        "names request 'big', which pod claim 'gpu' does not have (requests: gpu)",
    ),
    (
        "container names a request the claim lacks",
        lambda: [
            make_claim(name="shared"),
            make_claim_pod(claim="shared", claims=[{"name": "gpu", "request": "big"}]),
        ],
        "spec.containers[0].resources.claims[0].request",
        "does not have",
    ),
    (
        "template in another namespace",
        lambda: [make_template(namespace="other"), make_claim_pod()],
        "spec.resourceClaims[0].resourceClaimTemplateName",
        "is in namespace other, but the pod is in ml",
    ),
    (
        "both claim and template",
        lambda: [
            _with(
                make_claim_pod(),
                lambda p: p["spec"]["resourceClaims"][0].update(resourceClaimName="x"),
            )
        ],
        "spec.resourceClaims[0]",
        "exactly one of resourceClaimName or resourceClaimTemplateName",
    ),
    (
        "whole claim next to one of its requests",
        lambda: [make_claim_pod(claims=[{"name": "gpu"}, {"name": "gpu", "request": "gpu"}])],
        "spec.containers[0].resources.claims[1]",
        "both whole and for one of its requests",
    ),
    (
        "pod claim name not a DNS label",
        lambda: [
            _with(make_claim_pod(), lambda p: p["spec"]["resourceClaims"][0].update(name="GPU"))
        ],
        "spec.resourceClaims[0].name",
        "not a valid pod claim name",
    ),
    (
        "unknown field in a pod claim",
        lambda: [
            _with(
                make_claim_pod(),
                lambda p: p["spec"]["resourceClaims"][0].update(source={"x": 1}),
            )
        ],
        "spec.resourceClaims[0].source",
        "unknown field 'source'",
    ),
    (
        "workload pod template",
        lambda: [
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "train", "namespace": "ml"},
                "spec": {"template": make_claim_pod(claims=[{"name": "nope"}])},
            }
        ],
        "spec.template.spec.containers[0].resources.claims[0].name",
        "must be one of the names",
    ),
    (
        "ephemeral container with a claim",
        lambda: [
            _with(
                make_claim_pod(),
                lambda p: p["spec"].update(
                    ephemeralContainers=[
                        {"name": "dbg", "resources": {"claims": [{"name": "gpu"}]}}
                    ]
                ),
            )
        ],
        "spec.ephemeralContainers[0].resources.claims",
        "ephemeral containers cannot use resource claims",
    ),
    # rule 4: CEL
    (
        "CEL syntax error",
        lambda: [make_class("gpu.example.com", 'device.driver == "a" &&')],
        "spec.selectors[0].cel.expression",
        "syntax error at line 1, column 22",
    ),
    (
        "CEL unknown variable",
        lambda: [make_claim(request(selectors=[selector('gpu.model == "x"')]))],
        f"{R0}.exactly.selectors[0].cel.expression",
        "undeclared reference to 'gpu'",
    ),
    (
        "CEL in a firstAvailable subrequest",
        lambda: [
            make_claim(
                {
                    "name": "gpu",
                    "firstAvailable": [
                        {
                            "name": "big",
                            "deviceClassName": "gpu.example.com",
                            "selectors": [selector("device.memory > 1")],
                        }
                    ],
                }
            )
        ],
        f"{R0}.firstAvailable[0].selectors[0].cel.expression",
        "device has no field 'memory'",
    ),
    # rule 5 without a cluster: NVIDIA configs decoded strictly
    (
        "timeSlicingConfig under MPS",
        lambda: [
            make_claim(
                config=[
                    {
                        "opaque": {
                            "driver": "gpu.nvidia.com",
                            "parameters": {
                                "apiVersion": "resource.nvidia.com/v1beta1",
                                "kind": "GpuConfig",
                                "sharing": {"strategy": "MPS", "timeSlicingConfig": {}},
                            },
                        }
                    }
                ]
            )
        ],
        "spec.devices.config[0].opaque.parameters.sharing.timeSlicingConfig",
        "not allowed with strategy MPS",
    ),
]


@pytest.mark.parametrize(
    ("factory", "field", "needle"),
    [(f, p, n) for _, f, p, n in BROKEN],
    ids=[name for name, *_ in BROKEN],
)
def test_broken_variants_are_rejected_at_the_right_field(
    factory: Callable[[], list[dict[str, Any]]], field: str, needle: str
) -> None:
    found = errors(run(*factory()))
    assert any(f.field == field and needle in f.message for f in found), format_findings(found)


def test_templates_are_checked_under_spec_spec() -> None:
    found = errors(run(make_template(request(count=0))))
    assert [f.field for f in found] == ["spec.spec.devices.requests[0].exactly.count"]
    assert found[0].object == "ResourceClaimTemplate/ml/single-gpu"


def test_beta_versions_are_reported_not_checked() -> None:
    claim = make_claim()
    claim["apiVersion"] = "resource.k8s.io/v1beta1"
    found = run(claim)
    assert [(f.severity, f.field) for f in found] == [("warning", "apiVersion")]


def test_unguarded_attribute_reads_warn_and_guarded_ones_do_not() -> None:
    unguarded = run(make_claim(request(selectors=[selector(f'{MODEL} == "x"')])))
    guarded = run(
        make_claim(
            request(
                selectors=[
                    selector(f'"model" in device.attributes["gpu.example.com"] && {MODEL} == "x"')
                ]
            )
        )
    )
    assert [(f.severity, f.field) for f in unguarded] == [
        ("warning", f"{R0}.exactly.selectors[0].cel.expression")
    ]
    assert 'model" in device.attributes' in unguarded[0].message
    assert guarded == []


@pytest.mark.parametrize(
    ("strategy", "gate"), [("TimeSlicing", "TimeSlicingSettings"), ("MPS", "MPSSupport")]
)
def test_nvidia_sharing_warns_about_the_driver_gate(strategy: str, gate: str) -> None:
    parameters = {
        "apiVersion": "resource.nvidia.com/v1beta1",
        "kind": "GpuConfig",
        "sharing": {"strategy": strategy},
    }
    found = run(
        make_claim(config=[{"opaque": {"driver": "gpu.nvidia.com", "parameters": parameters}}])
    )
    assert [(f.severity, f.field) for f in found] == [
        ("warning", "spec.devices.config[0].opaque.parameters.sharing.strategy")
    ]
    assert f"{gate}=true" in found[0].message


def test_offline_a_template_missing_from_the_input_is_not_an_error() -> None:
    assert run(make_claim_pod(claims=[{"name": "gpu", "request": "anything"}])) == []


def test_schema_walker_reports_every_unknown_field_with_its_path() -> None:
    claim = make_claim()
    claim["spec"]["devices"]["requests"][0]["exactly"]["colour"] = "red"
    claim["spec"]["extra"] = 1
    found = list(check_schema(claim, {"$ref": "io.k8s.api.resource.v1.ResourceClaim"}, ""))
    assert [where for where, _ in found] == [
        "spec.devices.requests[0].exactly.colour",
        "spec.extra",
    ]


def test_findings_serialise_with_the_documented_keys() -> None:
    found = run(make_claim(request(count=0)))
    assert json.loads(json.dumps([f.to_dict() for f in found])) == [
        {
            "severity": "error",
            "object": "ResourceClaim/ml/single-gpu",
            "field": f"{R0}.exactly.count",
            "message": "must be greater than 0, got 0",
        }
    ]
    line = format_findings(found)
    assert line.split()[:3] == ["error", "ResourceClaim/ml/single-gpu", f"{R0}.exactly.count"]


# --- rule 5: against a simulated cluster ------------------------------------------------------


def infos(findings: list[Finding]) -> list[str]:
    return [f.message for f in findings if f.severity == "info"]


def test_each_request_says_how_many_devices_match_on_how_many_nodes() -> None:
    found = run(make_claim(request("gpu"), request("second")), cluster=snapshot())
    assert infos(found) == [
        "request 'gpu': 8 devices match on 2 nodes",
        "request 'second': 8 devices match on 2 nodes",
    ]
    assert errors(found) == []


def test_class_and_request_selectors_both_narrow_the_match() -> None:
    reader = validate_cluster(
        device_classes=[make_class("gpu.example.com", 'device.driver == "gpu.example.com"')],
        resource_slices=[
            example_slice("node-a", [example_device(i, model="A100") for i in range(2)]),
            example_slice("node-b", [example_device(i, model="H100") for i in range(4)]),
        ],
    )
    claim = make_claim(request(selectors=[selector(f'{MODEL} == "H100"')]))
    assert infos(run(claim, cluster=snapshot(reader))) == [
        "request 'gpu': 4 devices match on 1 node"
    ]


def test_a_selector_for_a_product_that_does_not_exist_is_an_error_naming_it() -> None:
    claim = make_claim(request(selectors=[selector(f'{MODEL} == "B200"')]))
    found = errors(run(claim, cluster=snapshot()))
    assert [f.field for f in found] == [f"{R0}.exactly.selectors"]
    assert "no device in the cluster matches" in found[0].message
    assert "request selector 0 keeps 0 of 8" in found[0].message


def test_a_count_no_single_node_can_satisfy_is_an_error() -> None:
    found = errors(run(make_claim(request(count=5)), cluster=snapshot()))
    assert [f.field for f in found] == [f"{R0}.exactly.count"]
    assert "needs 5 devices on one node, but at most 4" in found[0].message


def test_requests_that_fit_alone_must_also_fit_together_on_one_node() -> None:
    together = run(make_claim(request("a", count=2), request("b", count=2)), cluster=snapshot())
    assert errors(together) == []
    found = errors(
        run(make_claim(request("a", count=3), request("b", count=2)), cluster=snapshot())
    )
    assert [f.field for f in found] == ["spec.devices.requests"]
    assert "fit one by one but not together: they need 5 distinct free devices" in found[0].message
    assert "at most 4" in found[0].message


def test_allocated_devices_do_not_count_as_free() -> None:
    reader = validate_cluster(
        resource_claims=[
            allocated_claim("node-a", "gpu-0", "gpu-1"),
            allocated_claim("node-b", "gpu-0", "gpu-1", name="taken-b"),
        ]
    )
    assert errors(run(make_claim(request(count=2)), cluster=snapshot(reader))) == []
    found = errors(run(make_claim(request(count=3)), cluster=snapshot(reader)))
    assert "at most 2 matching devices are free on any one node" in found[0].message


def test_a_count_no_node_can_meet_says_the_best_nodes_and_the_clusters_figures() -> None:
    reader = validate_cluster(
        resource_slices=[
            example_slice("node-a", [example_device(i) for i in range(8)]),
            example_slice("node-b", [example_device(i) for i in range(6)]),
        ],
        resource_claims=[allocated_claim("node-a", "gpu-0", "gpu-1")],
    )
    (found,) = errors(run(make_claim(request(count=7)), cluster=snapshot(reader)))
    assert found.message.startswith(
        "request 'gpu' needs 7 devices on one node, but at most 6 matching devices are free on "
        "any one node (node-a: 6 of 8 matching free); in the cluster 14 match on 2 nodes, 12 "
        "of them free; matching: "
    )


def test_only_the_newest_pool_generation_counts() -> None:
    reader = validate_cluster(
        resource_slices=[
            example_slice("node-a", generation=1),
            example_slice("node-a", [], generation=2),
        ]
    )
    found = errors(run(make_claim(), cluster=snapshot(reader)))
    assert "no device in the cluster matches (0 published" in found[0].message


def test_a_missing_device_class_is_an_error_listing_the_classes() -> None:
    found = errors(run(make_claim(request(deviceClassName="gpu.nvidia.com")), cluster=snapshot()))
    assert [f.field for f in found] == [f"{R0}.exactly.deviceClassName"]
    assert "DeviceClass 'gpu.nvidia.com' does not exist" in found[0].message
    assert "gpu.example.com" in found[0].message


def test_a_device_class_in_the_input_says_how_many_devices_it_selects() -> None:
    reader = validate_cluster(
        resource_slices=[
            example_slice("node-a", [example_device(i, model="A100") for i in range(2)]),
            example_slice("node-b", [example_device(i, model="H100") for i in range(4)]),
        ],
    )
    found = run(make_class("h100.example.com", f'{MODEL} == "H100"'), cluster=snapshot(reader))
    assert [(f.severity, f.field, f.message) for f in found] == [
        ("warning", "spec.selectors[0].cel.expression", found[0].message),
        ("info", "spec.selectors", "4 devices of 6 match on 1 node"),
    ]


def test_a_device_class_in_the_input_counts_as_existing() -> None:
    found = run(
        make_class("gpu.nvidia.com"),
        make_claim(request(deviceClassName="gpu.nvidia.com")),
        cluster=snapshot(),
    )
    assert errors(found) == []


def test_selectors_that_fail_at_run_time_are_errors() -> None:
    claim = make_claim(
        request(selectors=[selector('device.attributes["gpu.example.com"].uuid == "x"')])
    )
    found = errors(run(claim, cluster=snapshot()))
    assert any("CEL runtime error" in f.message and "uuid" in f.message for f in found)


def test_first_available_falls_back_and_fails_when_no_alternative_fits() -> None:
    def first(*counts: int) -> dict[str, Any]:
        return make_claim(
            {
                "name": "gpu",
                "firstAvailable": [
                    {"name": f"n{c}", "deviceClassName": "gpu.example.com", "count": c}
                    for c in counts
                ],
            }
        )

    assert errors(run(first(8, 2), cluster=snapshot())) != []  # n8 cannot fit, n2 can...
    assert not any(
        "no firstAvailable alternative" in f.message for f in run(first(8, 2), cluster=snapshot())
    )
    found = errors(run(first(8, 6), cluster=snapshot()))
    assert any(f.field == R0 and "no firstAvailable alternative" in f.message for f in found)


def test_with_a_cluster_a_pod_claim_source_must_exist_somewhere() -> None:
    found = errors(run(make_claim_pod(template="nowhere"), cluster=snapshot()))
    assert [f.field for f in found] == ["spec.resourceClaims[0].resourceClaimTemplateName"]
    assert (
        "ResourceClaimTemplate ml/nowhere is not in the input nor in the cluster"
        in found[0].message
    )


def test_with_a_cluster_request_names_are_checked_against_cluster_templates() -> None:
    reader = validate_cluster(resource_claim_templates=[make_template(request("big"))])
    good = run(make_claim_pod(claims=[{"name": "gpu", "request": "big"}]), cluster=snapshot(reader))
    bad = run(make_claim_pod(claims=[{"name": "gpu", "request": "gpu"}]), cluster=snapshot(reader))
    assert errors(good) == []
    assert [f.field for f in errors(bad)] == ["spec.containers[0].resources.claims[0].request"]


def test_the_snapshot_takes_four_list_calls() -> None:
    reader = validate_cluster()
    ClusterSnapshot.from_reader(reader)
    assert reader.requests == 4


def test_a_selector_too_expensive_to_run_is_an_error_and_the_run_goes_on() -> None:
    items = "[" + ", ".join(str(i) for i in range(30)) + "]"
    costly = f"{items}.all(a, {items}.all(b, {items}.all(c, true)))"  # 27,000 iterations
    expensive = make_claim(request(selectors=[selector(costly)]), name="costly")
    cheap = make_claim(name="cheap")
    found = run(expensive, cheap, cluster=snapshot())
    costly_errors = [f.message for f in errors(found) if f.object == "ResourceClaim/ml/costly"]
    assert any("too expensive" in m for m in costly_errors)
    # the other claim was still checked against the cluster: 8 devices on 2 nodes
    assert any(
        f.object == "ResourceClaim/ml/cheap" and "8 devices match on 2 nodes" in f.message
        for f in found
    )
