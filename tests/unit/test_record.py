"""The rewritten record: strict, bounded reading, and the round trip rewrite -> describe."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from dracore.policy import Policy
from dracore.record import ContainerRecord, RecordError, RewrittenRecord
from dracore.translate import REWRITTEN_ANNOTATION, translate
from kubectl_dra.report import LegacyRequest, build_pod_reports
from tests.builders import cluster_claim, container, make_slice, result
from tests.builders import make_pod as make_legacy_pod

GOOD = {
    "version": 1,
    "policy": "p",
    "sharing": "Exclusive",
    "claim": "gpu",
    "template": "t",
    "containers": [{"container": "a", "resource": "nvidia.com/gpu", "count": 2, "requests": ["a"]}],
}


def test_a_record_survives_the_annotation_round_trip() -> None:
    record = RewrittenRecord(
        policy="p",
        sharing="MPS",
        containers=(
            ContainerRecord("a", "nvidia.com/gpu", 2, ("a",)),
            ContainerRecord("b", "nvidia.com/gpu", 0),
        ),
        claim="gpu",
        resource_claim="team",
        node_selector=(("nvidia.com/gpu.product", "H100"),),
    )
    assert RewrittenRecord.from_annotation(record.to_annotation()) == record


def test_records_written_before_versions_are_read_as_version_1() -> None:
    old = {k: v for k, v in GOOD.items() if k != "version"}
    assert RewrittenRecord.from_annotation(json.dumps(old)).template == "t"


def _with(**changes: Any) -> str:
    record = copy.deepcopy(GOOD)
    record.update(changes)
    return json.dumps(record)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{not json", "not JSON"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"a": "' + "x" * 300_000 + '"}', "more than a record can have"),
        (_with(version=3), "version 3 is not one this release reads (1 and 2)"),
        (_with(version=True), "version true"),
        (_with(extra=1), 'unknown field "extra"'),
        (_with(policy=5), "policy: expected a string"),
        (_with(containers={"a": 1}), "containers: expected a list"),
        (
            _with(containers=[{"container": "a", "resource": "r", "count": -1}]),
            "containers[0].count",
        ),
        (
            _with(containers=[{"container": "a", "resource": "r", "count": 2**63}]),
            "containers[0].count",
        ),
        (
            _with(containers=[{"container": "a", "resource": "r", "count": 1.5}]),
            "containers[0].count",
        ),
        ('{"version": 1, "count": NaN}', "NaN is not a number"),
        ('{"version": 1, "count": ' + "9" * 5000 + "}", "not JSON"),
        (_with(nodeSelector=["x"]), "nodeSelector: expected an object"),
        (
            _with(nodeAffinity=[{"key": "k", "operator": "In", "values": [1]}]),
            "nodeAffinity[0].values[0]",
        ),
    ],
    ids=lambda v: v[:30] if isinstance(v, str) else None,
)
def test_anything_but_a_record_is_a_record_error(text: str, problem: str) -> None:
    with pytest.raises(RecordError) as err:
        RewrittenRecord.from_annotation(text)
    assert problem in str(err.value)
    assert len(str(err.value)) < 300 and "\n" not in str(err.value)


def test_a_pod_rewritten_by_the_webhook_is_described_from_its_annotation() -> None:
    legacy = make_legacy_pod(container("a", gpus=2), container("b", gpus=1), namespace="ns")
    rewritten = translate(legacy, policy=Policy.default(), namespace="ns")
    (template,) = rewritten.templates

    # The pod as the API serves it once the controller made its claim and it was scheduled.
    pod = copy.deepcopy(rewritten.pod)
    pod["metadata"]["namespace"] = "ns"
    pod["spec"]["nodeName"] = "node-0"
    pod["status"] = {"resourceClaimStatuses": [{"name": "gpu", "resourceClaimName": "train-gpu-x"}]}
    claim = cluster_claim(
        "train-gpu-x",
        requests=["a", "b"],
        results=[result("a", "gpu-0"), result("a", "gpu-1"), result("b", "gpu-2")],
    )
    claim["spec"] = copy.deepcopy(template["spec"]["spec"])

    (report,) = build_pod_reports([pod], [claim], [make_slice("node-0")])
    assert report.rewritten is not None and report.rewritten.error is None
    assert report.rewritten.template == template["metadata"]["name"]
    assert report.rewritten.containers == (
        LegacyRequest("a", "nvidia.com/gpu", 2),
        LegacyRequest("b", "nvidia.com/gpu", 1),
    )
    rows = [
        (row.request, row.device, [str(o) for o in row.original])
        for row in report.claims[0].requests
    ]
    assert rows == [
        ("a", "gpu-0", ["a nvidia.com/gpu=2"]),
        ("a", "gpu-1", ["a nvidia.com/gpu=2"]),
        ("b", "gpu-2", ["b nvidia.com/gpu=1"]),
    ]


def test_describe_shows_a_forged_record_as_unreadable() -> None:
    pod = make_legacy_pod(container("a"), annotations={REWRITTEN_ANNOTATION: _with(version=99)})
    pod["spec"]["resourceClaims"] = [{"name": "gpu", "resourceClaimTemplateName": "t"}]
    (report,) = build_pod_reports([pod], [], [make_slice("node-0")])
    assert report.rewritten is not None and report.rewritten.error is not None
    assert report.rewritten.error.startswith("unreadable annotation: version 99")


# --- version 2: path, route, class -------------------------------------------------------------


def test_a_scheduler_path_record_survives_the_round_trip() -> None:
    record = RewrittenRecord(
        policy="p",
        sharing="TimeSlicing",
        containers=(ContainerRecord("a", "nvidia.com/gpu", 2, device_class="kubectl-dra-gpu"),),
        path="scheduler",
        route="admission-policy",
    )
    text = record.to_annotation()
    assert json.loads(text)["version"] == 2
    assert RewrittenRecord.from_annotation(text) == record


@pytest.mark.parametrize(
    ("claim", "path", "route"),
    [("gpu", "templates", "webhook"), (None, "scheduler", "admission-policy")],
)
def test_version_1_records_get_the_path_and_route_their_writers_had(
    claim: str | None, path: str, route: str
) -> None:
    old = {k: v for k, v in GOOD.items() if k not in ("claim", "template")}
    old["containers"] = [{"container": "a", "resource": "nvidia.com/gpu", "count": 2}]
    if claim:
        old["claim"] = claim
    record = RewrittenRecord.from_annotation(json.dumps(old))
    assert (record.path, record.route) == (path, route)


V2 = {
    "version": 2,
    "path": "scheduler",
    "route": "webhook",
    "policy": "p",
    "sharing": "Exclusive",
    "containers": [{"container": "a", "resource": "nvidia.com/gpu", "count": 1, "class": "c"}],
}


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"path": "kubelet"}, 'path: "kubelet" is not one of templates, scheduler'),
        ({"route": None}, "route: null is not one of webhook, admission-policy"),
        ({"path": None}, "path: null is not one of"),
        ({"claim": "gpu"}, "claim: a scheduler-path record names no claim"),
        (
            {"containers": [{"container": "a", "resource": "r", "count": 1, "requests": ["x"]}]},
            "containers[0].requests: a scheduler-path record names no claim requests",
        ),
        ({"containers": [{"container": "a", "resource": "r", "count": 1, "class": 3}]}, "class"),
        ({"extra": 1}, 'unknown field "extra"'),
    ],
)
def test_version_2_records_are_read_strictly(changes: dict[str, Any], problem: str) -> None:
    with pytest.raises(RecordError) as err:
        RewrittenRecord.from_annotation(json.dumps({**V2, **changes}))
    assert problem in str(err.value)
    assert "\n" not in str(err.value)


def test_version_1_records_carry_no_version_2_fields() -> None:
    with pytest.raises(RecordError, match="path: not a field of version 1 records"):
        RewrittenRecord.from_annotation(_with(path="templates"))
    bad = copy.deepcopy(GOOD)
    bad["containers"][0]["class"] = "c"  # type: ignore[index]
    with pytest.raises(RecordError, match='unknown field "class"'):
        RewrittenRecord.from_annotation(json.dumps(bad))
