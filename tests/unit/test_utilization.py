"""report/utilization.py: what `kubectl dra top` counts, for whole GPUs and MIG devices."""

from __future__ import annotations

from typing import Any

from dracore.capacity import Capacity
from kubectl_dra.report.utilization import Usage, build_utilization
from tests.unit.test_capacity import DRIVER, partitionable_slice


def claim_of(node: str, *devices: str) -> dict[str, Any]:
    results = [{"request": "r", "driver": DRIVER, "pool": node, "device": d} for d in devices]
    return {
        "metadata": {"namespace": "ns", "name": "-".join(devices)},
        "status": {"allocation": {"devices": {"results": results}}},
    }


def test_a_gpu_is_not_free_while_a_mig_device_of_it_is_allocated_and_vice_versa() -> None:
    # Two GPUs, each published whole and as 7 MIG devices: GPU 0 has one MIG device in use,
    # GPU 1 is in use whole.
    report = build_utilization(
        [partitionable_slice("n", 2)], [claim_of("n", "gpu-0-mig-3"), claim_of("n", "gpu-1")]
    )
    [node] = report.nodes
    assert node.gpus == Capacity(total=2, allocated=2)
    assert node.models == (
        Usage("A100", None, total=2, allocated=1, free=0),  # gpu-0 has a MIG device in use
        Usage("A100", "1g.10gb", total=14, allocated=1, free=6),  # gpu-1's 7 are not free
    )
    assert report.totals == node.models
    assert report.gpus == node.gpus


def test_nothing_allocated_is_all_free_and_nodes_are_counted_apart() -> None:
    report = build_utilization([partitionable_slice("a", 1), partitionable_slice("b", 3)], [])
    assert [(n.node, n.gpus.total, n.gpus.free) for n in report.nodes] == [
        ("a", 1, 1),
        ("b", 3, 3),
    ]
    assert report.totals == (
        Usage("A100", None, total=4, allocated=0, free=4),
        Usage("A100", "1g.10gb", total=28, allocated=0, free=28),
    )
    assert report.gpus == Capacity(total=4, allocated=0)


def test_claims_of_devices_no_slice_publishes_count_nowhere() -> None:
    report = build_utilization([partitionable_slice("a", 1)], [claim_of("gone", "gpu-9")])
    assert report.gpus == Capacity(total=1, allocated=0)
