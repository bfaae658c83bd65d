"""report.py: API dicts -> rows, for each way a pod gets a claim and each view."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from dracore.translate import REWRITTEN_ANNOTATION
from kubectl_dra.report import (
    EXTENDED_RESOURCE_CLAIM_ANNOTATION,
    POD_CLAIM_NAME_ANNOTATION,
    LegacyRequest,
    ModelCount,
    NamespaceUsage,
    Sharing,
    build_claim_reports,
    build_cluster_report,
    build_namespace_usage,
    build_node_reports,
    build_pod_reports,
    format_bytes,
    index_devices,
    parse_quantity,
)
from tests.builders import (
    H100,
    claim_ref,
    cluster_claim,
    cluster_pod,
    make_device,
    make_slice,
    result,
    sharing_config,
    template_ref,
)

SLICES = [make_slice("node-0")]


def test_template_claim_is_found_through_pod_status_with_device_attributes() -> None:
    pod = cluster_pod(
        "pod0",
        resource_claims=[template_ref("gpus", "two-gpus")],
        containers={"ctr0": [{"name": "gpus"}]},
        claim_statuses={"gpus": "pod0-gpus-abcde"},
    )
    claim = cluster_claim(
        "pod0-gpus-abcde",
        requests=["gpu-1", "gpu-2"],
        results=[result("gpu-1", "gpu-0"), result("gpu-2", "gpu-1")],
        reserved_for=[pod],
    )
    [report] = build_pod_reports([pod], [claim], SLICES)

    [pod_claim] = report.claims
    assert (pod_claim.name, pod_claim.origin, pod_claim.source) == ("gpus", "template", "two-gpus")
    assert (pod_claim.claim, pod_claim.state) == ("pod0-gpus-abcde", "reserved")
    first, second = pod_claim.requests
    assert (first.request, first.driver, first.pool, first.device) == (
        "gpu-1",
        "gpu.nvidia.com",
        "node-0",
        "gpu-0",
    )
    assert (first.node, first.model, first.uuid, first.memory) == (
        "node-0",
        "NVIDIA A100-SXM4-80GB",
        "GPU-node-0-0",
        "80Gi",
    )
    assert second.device == "gpu-1"
    assert first.containers == second.containers == ("ctr0",)
    assert first.shared_with == ()
    assert first.device_class == "gpu.nvidia.com"


def test_template_claim_falls_back_to_owned_claim_with_pod_claim_annotation() -> None:
    pod = cluster_pod("pod0", resource_claims=[template_ref("gpu", "t")])
    stranger = cluster_claim("other", annotations={POD_CLAIM_NAME_ANNOTATION: "gpu"})
    owned = cluster_claim(
        "pod0-gpu-xyz",
        owner=pod,
        annotations={POD_CLAIM_NAME_ANNOTATION: "gpu"},
        results=[result("gpu", "gpu-1")],
    )
    [report] = build_pod_reports([pod], [stranger, owned], SLICES)

    assert report.claims[0].claim == "pod0-gpu-xyz"
    assert report.claims[0].state == "allocated"
    assert report.claims[0].requests[0].device == "gpu-1"


def test_template_claim_not_made_yet_is_pending_and_names_no_claim() -> None:
    pod = cluster_pod(
        "pod0", node=None, resource_claims=[template_ref("gpu", "t")], containers={"c": []}
    )
    [report] = build_pod_reports([pod], [], SLICES)
    assert report.claims[0].state == "pending"
    assert report.claims[0].claim is None
    assert report.claims[0].requests == ()


def test_named_claim_shared_by_two_pods_names_the_other_pod() -> None:
    pods = [
        cluster_pod(p, resource_claims=[claim_ref("shared", "single-gpu")], containers={"c": []})
        for p in ("pod0", "pod1")
    ]
    claim = cluster_claim("single-gpu", results=[result("gpu", "gpu-0")], reserved_for=pods)
    reports = build_pod_reports(pods, [claim], SLICES)

    assert [r.claims[0].origin for r in reports] == ["claim", "claim"]
    assert [r.claims[0].source for r in reports] == ["single-gpu", "single-gpu"]
    assert [r.claims[0].requests[0].shared_with for r in reports] == [("pod/pod1",), ("pod/pod0",)]
    assert reports[0].claims[0].reserved_for == ("pod0", "pod1")


def test_named_claim_that_does_not_exist_is_missing() -> None:
    pod = cluster_pod("pod0", resource_claims=[claim_ref("shared", "nope")])
    [report] = build_pod_reports([pod], [], SLICES)
    assert (report.claims[0].state, report.claims[0].claim) == ("missing", "nope")


def test_two_containers_on_one_claim_both_show_as_holders() -> None:
    pod = cluster_pod(
        "pod0",
        resource_claims=[template_ref("shared-gpu", "single-gpu")],
        containers={"ctr0": [{"name": "shared-gpu"}], "ctr1": [{"name": "shared-gpu"}]},
        claim_statuses={"shared-gpu": "c1"},
    )
    claim = cluster_claim("c1", results=[result("gpu", "gpu-0")], reserved_for=[pod])
    [report] = build_pod_reports([pod], [claim], SLICES)
    assert report.claims[0].requests[0].containers == ("ctr0", "ctr1")


def test_container_naming_one_request_gets_only_that_request() -> None:
    pod = cluster_pod(
        "pod0",
        resource_claims=[template_ref("g", "t")],
        containers={"a": [{"name": "g", "request": "r1"}], "b": [{"name": "g", "request": "r2"}]},
        claim_statuses={"g": "c1"},
    )
    claim = cluster_claim(
        "c1", requests=["r1", "r2"], results=[result("r1", "gpu-0"), result("r2", "gpu-1")]
    )
    [report] = build_pod_reports([pod], [claim], SLICES)
    assert [r.containers for r in report.claims[0].requests] == [("a",), ("b",)]


def test_kep5004_claim_is_found_through_extended_resource_claim_status() -> None:
    pod = cluster_pod(
        "legacy",
        extended={
            "resourceClaimName": "legacy-extended-resources-abcde",
            "requestMappings": [
                {
                    "containerName": "ctr0",
                    "resourceName": "nvidia.com/gpu",
                    "requestName": "container-0-request-0",
                }
            ],
        },
    )
    claim = cluster_claim(
        "legacy-extended-resources-abcde",
        requests=["container-0-request-0"],
        count=2,
        owner=pod,
        annotations={EXTENDED_RESOURCE_CLAIM_ANNOTATION: "true"},
        results=[
            result("container-0-request-0", "gpu-0"),
            result("container-0-request-0", "gpu-1"),
        ],
        reserved_for=[pod],
    )
    [report] = build_pod_reports([pod], [claim], SLICES)

    [pod_claim] = report.claims
    assert (pod_claim.name, pod_claim.origin, pod_claim.state) == (
        None,
        "extended-resource",
        "reserved",
    )
    assert pod_claim.claim == "legacy-extended-resources-abcde"
    assert [r.device for r in pod_claim.requests] == ["gpu-0", "gpu-1"]
    assert pod_claim.requests[0].containers == ("ctr0",)
    assert pod_claim.requests[0].original == (LegacyRequest("ctr0", "nvidia.com/gpu", 2),)
    assert build_claim_reports([claim], SLICES)[0].origin == "extended-resource"


def test_kep5004_claim_without_pod_status_is_found_by_annotation_and_owner() -> None:
    pod = cluster_pod("legacy")
    claim = cluster_claim(
        "legacy-extended-resources-x",
        owner=pod,
        annotations={EXTENDED_RESOURCE_CLAIM_ANNOTATION: "true"},
    )
    [report] = build_pod_reports([pod], [claim], SLICES)
    assert report.claims[0].origin == "extended-resource"
    assert report.claims[0].claim == "legacy-extended-resources-x"
    assert report.claims[0].state == "pending"


@pytest.mark.parametrize(
    ("configs", "expected"),
    [
        ([], None),
        ([sharing_config("TimeSlicing")], Sharing("TimeSlicing", "FromClaim")),
        ([sharing_config("MPS", source="FromClass")], Sharing("MPS", "FromClass")),
        (
            [sharing_config("MPS", source="FromClass"), sharing_config("TimeSlicing")],
            Sharing("TimeSlicing", "FromClaim"),
        ),
        ([sharing_config("TimeSlicing", requests=["other"])], None),
        ([sharing_config("TimeSlicing", requests=["gpu"])], Sharing("TimeSlicing", "FromClaim")),
    ],
)
def test_sharing_comes_from_the_last_config_that_applies_to_the_request(
    configs: list[dict[str, object]], expected: Sharing | None
) -> None:
    claim = cluster_claim("c", results=[result("gpu", "gpu-0")], config=configs)
    [report] = build_claim_reports([claim], SLICES)
    assert report.requests[0].sharing == expected


def test_rewritten_pod_shows_its_original_legacy_request_per_request() -> None:
    record = {
        "policy": "abc123",
        "sharing": "Exclusive",
        "claim": "gpu",
        "template": "kubectl-dra-1234",
        "containers": [
            {"container": "train", "resource": "nvidia.com/gpu", "count": 2, "requests": ["gpu"]},
            {"container": "side", "resource": "nvidia.com/gpu", "count": 0},
        ],
    }
    pod = cluster_pod(
        "train",
        resource_claims=[template_ref("gpu", "kubectl-dra-1234")],
        containers={"train": [{"name": "gpu", "request": "gpu"}], "side": []},
        claim_statuses={"gpu": "train-gpu-1"},
        annotations={REWRITTEN_ANNOTATION: json.dumps(record)},
    )
    claim = cluster_claim("train-gpu-1", count=2, results=[result("gpu", "gpu-0")])
    [report] = build_pod_reports([pod], [claim], SLICES)

    assert report.rewritten is not None
    assert report.rewritten.containers == (
        LegacyRequest("train", "nvidia.com/gpu", 2),
        LegacyRequest("side", "nvidia.com/gpu", 0),
    )
    assert (report.rewritten.policy, report.rewritten.template) == ("abc123", "kubectl-dra-1234")
    assert [str(o) for o in report.claims[0].requests[0].original] == ["train nvidia.com/gpu=2"]


def test_rewritten_pod_with_shared_claim_maps_original_to_every_request() -> None:
    record = {
        "policy": "p",
        "sharing": "TimeSlicing",
        "claim": "gpu",
        "resourceClaim": "team-gpu",
        "containers": [{"container": "a", "resource": "nvidia.com/gpu", "count": 1}],
    }
    pod = cluster_pod(
        "a",
        resource_claims=[claim_ref("gpu", "team-gpu")],
        annotations={REWRITTEN_ANNOTATION: json.dumps(record)},
    )
    claim = cluster_claim("team-gpu", results=[result("gpu", "gpu-0")])
    [report] = build_pod_reports([pod], [claim], SLICES)
    assert report.rewritten is not None and report.rewritten.resource_claim == "team-gpu"
    assert [str(o) for o in report.claims[0].requests[0].original] == ["a nvidia.com/gpu=1"]


def test_unreadable_rewritten_annotation_is_reported_not_raised() -> None:
    pod = cluster_pod("p", annotations={REWRITTEN_ANNOTATION: "{not json"})
    [report] = build_pod_reports([pod], [], SLICES)
    assert report.rewritten is not None
    assert report.rewritten.error is not None and "unreadable" in report.rewritten.error


def test_pods_without_dra_are_left_out_unless_asked_for() -> None:
    plain = cluster_pod("web")
    assert build_pod_reports([plain], [], SLICES) == []
    assert [r.name for r in build_pod_reports([plain], [], SLICES, only_dra=False)] == ["web"]


def test_pending_claim_lists_requests_as_written() -> None:
    claim = cluster_claim("c", requests=["a", "b"], count=3)
    [report] = build_claim_reports([claim], SLICES)
    assert report.state == "pending"
    assert [(r.request, r.device_class, r.count, r.device) for r in report.requests] == [
        ("a", "gpu.nvidia.com", 3, None),
        ("b", "gpu.nvidia.com", 3, None),
    ]


def test_another_claim_on_the_same_device_is_named_as_sharer() -> None:
    first = cluster_claim("c1", results=[result("gpu", "gpu-0")])
    second = cluster_claim("c2", namespace="other", results=[result("gpu", "gpu-0")])
    reports = build_claim_reports([first, second], SLICES)
    assert [(r.name, r.requests[0].shared_with) for r in reports] == [
        ("c1", ("claim/other/c2",)),
        ("c2", ("claim/ns/c1",)),
    ]


def test_only_the_newest_pool_generation_counts() -> None:
    old = make_slice("node-0", [make_device("gpu-old")], generation=1)
    new = make_slice("node-0", [make_device("gpu-new")], generation=2)
    assert [key[2] for key in index_devices([old, new])] == ["gpu-new"]


def test_device_attributes_may_be_qualified_with_the_driver_domain() -> None:
    device = make_device("gpu-0", product=None, uuid="u", type_="gpu")
    device["attributes"]["gpu.nvidia.com/productName"] = {"string": H100}
    device["capacity"] = {"gpu.nvidia.com/memory": {"value": str(81559 * 2**20)}}
    [found] = index_devices([make_slice("n", [device])]).values()
    assert (found.model, found.memory) == (H100, "79.6Gi")


def test_mig_devices_form_their_own_model() -> None:
    mig = make_device("gpu-7-mig-1g10gb-19-0", type_="mig", profile="1g.10gb", memory="9856Mi")
    [found] = index_devices([make_slice("n", [mig])]).values()
    assert found.model == "NVIDIA A100-SXM4-80GB MIG 1g.10gb"
    assert found.memory == "9.6Gi"


def test_node_report_counts_devices_by_model_and_names_holders() -> None:
    slices = [
        make_slice("node-0", [make_device(f"gpu-{i}") for i in (0, 1, 10, 2)]),
        make_slice("node-1", [make_device("gpu-0", product=H100)]),
    ]
    pod = cluster_pod("pod0")
    claim = cluster_claim("c", results=[result("gpu", "gpu-10")], reserved_for=[pod])
    reports = build_node_reports(slices, [claim])

    assert [r.node for r in reports] == ["node-0", "node-1"]
    node0 = reports[0]
    assert node0.models == (ModelCount("NVIDIA A100-SXM4-80GB", 4, 1),)
    assert node0.models[0].free == 3
    assert [d.device.name for d in node0.devices] == ["gpu-0", "gpu-1", "gpu-2", "gpu-10"]
    held = node0.devices[-1]
    assert (held.allocated, held.claims, held.pods) == (True, ("ns/c",), ("ns/pod0",))
    assert [r.node for r in build_node_reports(slices, [claim], names=["node-1"])] == ["node-1"]


def test_cluster_report_totals_by_model_across_nodes() -> None:
    slices = [make_slice("a"), make_slice("b"), make_slice("h", [make_device("g", product=H100)])]
    claim = cluster_claim("c", results=[result("gpu", "gpu-1", pool="b")])
    report = build_cluster_report(slices, [claim])

    assert [(n.node, n.total, n.allocated) for n in report.nodes] == [
        ("a", 2, 0),
        ("b", 2, 1),
        ("h", 1, 0),
    ]
    assert all(n.devices == () for n in report.nodes)
    assert report.totals == (ModelCount("NVIDIA A100-SXM4-80GB", 4, 1), ModelCount(H100, 1, 0))


def test_namespace_usage_counts_devices_claims_pods_and_pending_requests() -> None:
    pods = [cluster_pod("p0"), cluster_pod("p1")]
    claims = [
        cluster_claim("c0", results=[result("gpu", "gpu-0")], reserved_for=pods),
        cluster_claim("c1", results=[result("gpu", "gpu-1")]),
        cluster_claim("c2", count=4),
        cluster_claim("x", namespace="other", results=[result("gpu", "gpu-0", pool="node-1")]),
    ]
    usage = build_namespace_usage(claims, [*SLICES, make_slice("node-1")])
    assert usage == [
        NamespaceUsage("ns", "(pending)", 4, 1, 0),
        NamespaceUsage("ns", "NVIDIA A100-SXM4-80GB", 2, 2, 2),
        NamespaceUsage("other", "NVIDIA A100-SXM4-80GB", 1, 1, 0),
    ]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("80Gi", Decimal(80 * 2**30)),
        ("85899345920", Decimal(85899345920)),
        ("1.5G", Decimal("1.5e9")),
        ("500m", Decimal("0.5")),
        ("junk", None),
    ],
)
def test_parse_quantity(text: str, value: Decimal | None) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize(
    ("text", "shown"),
    [("80Gi", "80Gi"), ("85899345920", "80Gi"), ("512Mi", "512Mi"), ("100", "100"), ("x", "x")],
)
def test_format_bytes(text: str, shown: str) -> None:
    assert format_bytes(text) == shown


def test_a_pending_first_available_request_counts_its_largest_alternative() -> None:
    """One alternative is allocated, so the most the request can hold is the largest: 4."""
    claim = cluster_claim("fa")
    claim["spec"]["devices"]["requests"] = [
        {
            "name": "gpu",
            "firstAvailable": [
                {"name": "big", "deviceClassName": "a", "count": 4},
                {"name": "small", "deviceClassName": "b", "count": 2},
            ],
        }
    ]
    [report] = build_claim_reports([claim], SLICES)
    assert [(r.request, r.device_class, r.count) for r in report.requests] == [("gpu", "a | b", 4)]


def test_cluster_totals_by_model_add_up_to_the_physical_gpus() -> None:
    from hack import fakegpu

    nodes = [
        fakegpu.FakeNode("a100", fakegpu.NVIDIA_DRIVER, fakegpu.A100_80GB, mig_gpus=(6, 7)),
        fakegpu.FakeNode("h100", fakegpu.NVIDIA_DRIVER, fakegpu.H100_80GB, gpus=2),
    ]
    slices = [fakegpu.make_slice(n) for n in nodes]
    mig = next(d["name"] for d in slices[0]["spec"]["devices"] if "mig" in d["name"])
    claims = [
        cluster_claim("w", results=[result("gpu", "gpu-0", pool="a100")]),
        cluster_claim("m", results=[result("gpu", mig, pool="a100")]),
    ]
    report = build_cluster_report(slices, claims)

    # 6 whole A100s, 2 A100s split into 7 slices each (2 GPUs, not 14), 2 H100s.
    counts = {t.model: (t.total, t.allocated) for t in report.totals}
    assert sum(t for t, _ in counts.values()) == sum(n.total for n in report.nodes) == 10
    assert sum(a for _, a in counts.values()) == sum(n.allocated for n in report.nodes) == 2
    assert counts["NVIDIA A100-SXM4-80GB"] == (6, 1)
    assert sum(t for m, (t, _) in counts.items() if "MIG" in m) == 2
