"""The one table of workload kinds: where each keeps its pod template, and who reads it."""

from __future__ import annotations

from typing import Any

import pytest

from dracore.workload_kinds import BY_KIND, WORKLOAD_KINDS, template_of, workload_kind
from kubectl_dra.audit.workloads import WORKLOAD_KINDS as AUDITED_KINDS
from kubectl_dra.audit.workloads import pod_template
from kubectl_dra.kube import WORKLOAD_LISTS

POD = {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c"}]}}

# Written out by hand, independently of the table.
MANIFESTS: dict[str, dict[str, Any]] = {
    "Pod": {"apiVersion": "v1", "kind": "Pod", **POD},
    "PodTemplate": {"apiVersion": "v1", "kind": "PodTemplate", "template": POD},
    "ReplicationController": {"apiVersion": "v1", "kind": "ReplicationController", "spec": {"template": POD}},
    "Deployment": {"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"template": POD}},
    "StatefulSet": {"apiVersion": "apps/v1", "kind": "StatefulSet", "spec": {"template": POD}},
    "DaemonSet": {"apiVersion": "apps/v1", "kind": "DaemonSet", "spec": {"template": POD}},
    "ReplicaSet": {"apiVersion": "apps/v1", "kind": "ReplicaSet", "spec": {"template": POD}},
    "Job": {"apiVersion": "batch/v1", "kind": "Job", "spec": {"template": POD}},
    "CronJob": {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "spec": {"jobTemplate": {"spec": {"template": POD}}},
    },
}  # fmt: skip


@pytest.mark.parametrize("kind", sorted(MANIFESTS))
def test_each_kind_finds_its_pod_template(kind: str) -> None:
    manifest = MANIFESTS[kind]
    entry = workload_kind(manifest)
    assert entry is not None and entry.api_version == manifest["apiVersion"]
    found = template_of(manifest)
    assert found is not None and found["spec"] == POD["spec"]


def test_the_table_has_exactly_the_kinds_convert_documents() -> None:
    assert {k.kind for k in WORKLOAD_KINDS} == set(MANIFESTS)


def test_a_kind_of_another_api_group_is_not_a_workload() -> None:
    assert workload_kind({"apiVersion": "example.com/v1", "kind": "Deployment"}) is None
    assert template_of({"apiVersion": "v1", "kind": "ConfigMap", "data": {}}) is None


def test_a_template_of_the_wrong_type_is_none_not_a_crash() -> None:
    broken = {"apiVersion": "batch/v1", "kind": "CronJob", "spec": {"jobTemplate": ["x"]}}
    assert template_of(broken) is None
    assert pod_template("CronJob", broken) == {}


def test_audit_and_the_api_reader_read_only_kinds_of_the_table() -> None:
    assert set(AUDITED_KINDS) <= set(BY_KIND)
    assert set(WORKLOAD_LISTS) <= set(BY_KIND)
    assert set(WORKLOAD_LISTS) == set(AUDITED_KINDS) - {"Pod"}


@pytest.mark.parametrize("kind", sorted(set(AUDITED_KINDS)))
def test_audit_reads_the_same_template(kind: str) -> None:
    assert pod_template(kind, MANIFESTS[kind])["spec"] == POD["spec"]
