"""render.py: report rows -> kubectl-like tables and the documented json/yaml structure."""

from __future__ import annotations

import json

import yaml

from kubectl_dra import render
from kubectl_dra.report import (
    ClaimReport,
    NodeReport,
    PodReport,
    build_claim_reports,
    build_cluster_report,
    build_node_reports,
    build_pod_reports,
)
from tests.builders import FakeCluster, column, sample_cluster


def _reports(fake: FakeCluster) -> tuple[list[PodReport], list[ClaimReport], list[NodeReport]]:
    return (
        build_pod_reports(fake.pods, fake.claims, fake.slices),
        build_claim_reports(fake.claims, fake.slices),
        build_node_reports(fake.slices, fake.claims),
    )


def test_table_columns_are_aligned_and_empty_cells_show_a_dash() -> None:
    text = render.format_table(["NAME", "NODE"], [["a-long-name", ""], ["b", "n1"]])
    assert text.splitlines() == [
        "NAME          NODE",
        "a-long-name   -",
        "b             n1",
    ]


def test_pod_table_has_one_row_per_request_and_no_colour() -> None:
    pods, _, _ = _reports(sample_cluster())
    text = render.render_pods(pods, wide=False, namespaces=False)

    assert "\x1b[" not in text
    header = text.splitlines()[0].split()
    assert header[:6] == ["POD", "CLAIM", "ORIGIN", "STATE", "REQUEST", "CONTAINERS"]
    assert "NAMESPACE" not in header and "UUID" not in header
    assert column(text, "POD") == [
        "legacy",
        "multi",
        "multi",
        "rewritten",
        "share-a",
        "share-b",
        "sliced",
        "waiting",
    ]
    assert column(text, "ORIGIN")[0] == "extended-resource"
    assert column(text, "SHARED-WITH")[4:6] == ["pod/share-b", "pod/share-a"]
    assert column(text, "SHARING")[6] == "TimeSlicing"
    assert column(text, "ORIGINAL")[3] == "train nvidia.com/gpu=1"


def test_original_column_only_appears_when_a_pod_has_a_legacy_request() -> None:
    fake = sample_cluster()
    plain = [p for p in build_pod_reports(fake.pods, fake.claims, fake.slices) if p.name == "multi"]
    assert "ORIGINAL" not in render.render_pods(plain, wide=False, namespaces=False)
    assert "ORIGINAL" in render.render_pods(plain, wide=True, namespaces=False)


def test_wide_pod_table_adds_claim_driver_pool_uuid_memory_and_sharing_source() -> None:
    pods, _, _ = _reports(sample_cluster())
    text = render.render_pods(pods, wide=True, namespaces=True)
    header = text.splitlines()[0].split()
    for name in ("NAMESPACE", "RESOURCECLAIM", "DRIVER", "POOL", "UUID", "MEMORY"):
        assert name in header
    assert column(text, "UUID")[0] == "GPU-0-3"
    assert "TimeSlicing (FromClaim)" in column(text, "SHARING")


def test_claim_table_lists_consumers() -> None:
    _, claims, _ = _reports(sample_cluster())
    text = render.render_claims(claims, wide=False, namespaces=False)
    rows = dict(zip(column(text, "CLAIM"), column(text, "RESERVED-FOR"), strict=True))
    assert rows["team-gpu"] == "share-a,share-b"
    assert rows["waiting-gpu-1"] == "-"


def test_node_view_has_a_summary_then_one_row_per_device() -> None:
    _, _, nodes = _reports(sample_cluster())
    summary, devices = render.render_nodes(nodes, wide=False).split("\n\n")
    assert summary.splitlines()[1].split() == ["node-0", "NVIDIA", "A100-SXM4-80GB", "4", "4", "0"]
    assert len(devices.splitlines()) == 1 + 6
    assert "ns/share-a,ns/share-b" in devices


def test_cluster_view_has_one_line_per_node_and_a_total() -> None:
    fake = sample_cluster()
    text = render.render_cluster(build_cluster_report(fake.slices, fake.claims), wide=False)
    nodes, totals = text.split("\n\n")
    assert [line.split()[:4] for line in nodes.splitlines()[1:]] == [
        ["node-0", "4", "4", "0"],
        ["node-1", "2", "2", "0"],
    ]
    assert totals.splitlines()[-1].split() == ["(all)", "6", "6", "0"]


def test_json_document_is_camel_case_with_computed_counts() -> None:
    fake = sample_cluster()
    pods, _, nodes = _reports(fake)
    doc = json.loads(
        render.format_document(render.describe_document("PodReportList", pods), "json")
    )
    assert (doc["apiVersion"], doc["kind"]) == ("kubectl-dra.io/v1alpha1", "PodReportList")
    legacy = doc["items"][0]
    assert legacy["claims"][0]["origin"] == "extended-resource"
    request = legacy["claims"][0]["requests"][0]
    assert request["original"] == [{"container": "ctr0", "resource": "nvidia.com/gpu", "count": 1}]
    assert {"deviceClass", "sharedWith", "uuid", "memory"} <= request.keys()

    node_doc = render.describe_document("NodeReportList", nodes)
    assert node_doc["items"][0]["models"][0] == {
        "model": "NVIDIA A100-SXM4-80GB",
        "total": 4,
        "allocated": 4,
        "free": 0,
    }
    assert node_doc["items"][0]["devices"][0]["allocated"] is True


def test_yaml_and_json_carry_the_same_document() -> None:
    fake = sample_cluster()
    doc = render.cluster_document(build_cluster_report(fake.slices, fake.claims))
    assert yaml.safe_load(render.format_document(doc, "yaml")) == json.loads(
        render.format_document(doc, "json")
    )
    assert doc["kind"] == "ClusterReport"
    assert [t["model"] for t in doc["totals"]] == ["NVIDIA A100-SXM4-80GB", "NVIDIA H100 80GB HBM3"]
