"""describe on the scheduler's path: the record's path and writer, and the legacy request next to
the claim the scheduler made (found through status.extendedResourceClaimStatus)."""

from __future__ import annotations

import re
from typing import Any

from dracore.classes import IMPLICIT_PREFIX
from dracore.record import ContainerRecord, RewrittenRecord
from dracore.translate import REWRITTEN_ANNOTATION
from kubectl_dra import render
from kubectl_dra.report import build_pod_reports
from tests.builders import column, sample_cluster

IMPLICIT = IMPLICIT_PREFIX + "kubectl-dra-gpu"


def renamed_cluster() -> tuple[list[dict[str, Any]], Any]:
    """The sample cluster, its KEP-5004 pod made by our webhook's rename."""
    fake = sample_cluster()
    (pod,) = [p for p in fake.pods if p["metadata"]["name"] == "legacy"]
    pod["status"]["extendedResourceClaimStatus"]["requestMappings"][0]["resourceName"] = IMPLICIT
    record = RewrittenRecord(
        policy="p",
        sharing="Exclusive",
        containers=(ContainerRecord("ctr0", "nvidia.com/gpu", 1, device_class="kubectl-dra-gpu"),),
        path="scheduler",
    )
    pod["metadata"]["annotations"] = {REWRITTEN_ANNOTATION: record.to_annotation()}
    return [pod], fake


def test_the_pod_table_shows_the_path_and_the_legacy_request_it_replaced() -> None:
    pods, fake = renamed_cluster()
    reports = build_pod_reports(pods, fake.claims, fake.slices)
    text = render.render_pods(reports, wide=False, namespaces=False, width=400)
    assert column(text, "ORIGIN") == ["extended-resource"]
    assert column(text, "ORIGINAL") == ["ctr0 nvidia.com/gpu=1"]
    assert column(text, "PATH") == ["scheduler"]
    wide = render.render_pods(reports, wide=True, namespaces=False)
    assert column(wide, "RESOURCECLAIM") == ["legacy-extended-resources-x"]
    assert column(wide, "PATH") == ["scheduler/webhook"]
    # The path column goes first when the terminal is narrow.
    narrow = render.render_pods(reports, wide=False, namespaces=False, width=80)
    assert max(len(line) for line in narrow.splitlines()) <= 80


def test_the_pod_block_says_who_makes_the_claim() -> None:
    pods, fake = renamed_cluster()
    text = render.render_pod_blocks(build_pod_reports(pods, fake.claims, fake.slices))
    assert re.search(
        r"Path: +scheduler \(claim made by the scheduler; rewritten by webhook\)", text
    )
    assert re.search(r"ResourceClaim: +legacy-extended-resources-x", text)
    assert re.search(r"Original: +ctr0 nvidia.com/gpu=1", text)
