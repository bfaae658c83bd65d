"""Physical capacity (dracore/capacity.py): a GPU and its MIG devices are one unit."""

from __future__ import annotations

from typing import Any

from dracore.capacity import Capacity, count_units, group_units
from hack import fakegpu
from kubectl_dra.report import build_cluster_report, build_node_reports

DRIVER = "gpu.nvidia.com"


def partitionable_slice(node: str, gpus: int, *, generation: int = 1) -> dict[str, Any]:
    """What a driver with dynamic MIG publishes: each GPU whole and as 7 slices, all drawing on
    one counter set per GPU."""
    devices: list[dict[str, Any]] = []
    counter_sets = []
    for g in range(gpus):
        counter_set = f"gpu-{g}-counters"
        counter_sets.append({"name": counter_set, "counters": {"memory": {"value": "80Gi"}}})
        consumes = [{"counterSet": counter_set, "counters": {"memory": {"value": "10Gi"}}}]
        devices.append(
            {
                "name": f"gpu-{g}",
                "attributes": {"type": {"string": "gpu"}, "productName": {"string": "A100"}},
                "consumesCounters": [{"counterSet": counter_set, "counters": {}}],
            }
        )
        devices += [
            {
                "name": f"gpu-{g}-mig-{i}",
                "attributes": {
                    "type": {"string": "mig"},
                    "profile": {"string": "1g.10gb"},
                    "productName": {"string": "A100"},
                },
                "consumesCounters": consumes,
            }
            for i in range(7)
        ]
    return {
        "spec": {
            "driver": DRIVER,
            "nodeName": node,
            "pool": {"name": node, "generation": generation, "resourceSliceCount": 1},
            "sharedCounters": counter_sets,
            "devices": devices,
        }
    }


def test_static_mig_node_counts_eight_gpus_not_twenty_devices() -> None:
    node = fakegpu.FakeNode("a", fakegpu.NVIDIA_DRIVER, fakegpu.A100_80GB, mig_gpus=(6, 7))
    devices = group_units([fakegpu.make_slice(node)])

    assert len(devices) == 6 + 2 * 7  # what the slice publishes
    assert count_units(devices, set()) == Capacity(total=8, allocated=0)
    mig = [d for d in devices if d.profile == "1g.10gb"]
    assert len(mig) == 14 and len({d.unit for d in mig}) == 2


def test_partitionable_devices_share_one_unit_per_counter_set() -> None:
    devices = group_units([partitionable_slice("n", 2)])

    assert len(devices) == 2 * 8
    one_mig = ("gpu.nvidia.com", "n", "gpu-1-mig-3")
    assert count_units(devices, {one_mig}) == Capacity(total=2, allocated=1)
    both = {one_mig, ("gpu.nvidia.com", "n", "gpu-1-mig-4"), ("gpu.nvidia.com", "n", "gpu-0")}
    assert count_units(devices, both) == Capacity(total=2, allocated=2)


def test_only_the_newest_generation_of_a_pool_counts() -> None:
    old, new = partitionable_slice("n", 4, generation=1), partitionable_slice("n", 2, generation=2)
    assert count_units(group_units([old, new]), set()).total == 2


def test_describe_node_view_totals_physical_gpus() -> None:
    node = fakegpu.FakeNode("a", fakegpu.NVIDIA_DRIVER, fakegpu.A100_80GB, mig_gpus=(6, 7))
    mig_device = "gpu-7-mig-1g10gb-19-0"
    claim = {
        "metadata": {"namespace": "ns", "name": "c"},
        "status": {
            "allocation": {
                "devices": {
                    "results": [
                        {"request": "r", "driver": DRIVER, "pool": "a", "device": mig_device}
                    ]
                }
            }
        },
    }
    (report,) = build_node_reports([fakegpu.make_slice(node)], [claim])

    assert (report.total, report.allocated, report.free) == (8, 1, 7)
    # The model rows still list what is published: 6 whole GPUs and 14 MIG devices.
    assert sorted((m.model, m.total) for m in report.models) == [
        ("NVIDIA A100-SXM4-80GB", 6),
        ("NVIDIA A100-SXM4-80GB MIG 1g.10gb", 14),
    ]
    cluster = build_cluster_report([fakegpu.make_slice(node)], [claim])
    assert [(n.total, n.allocated) for n in cluster.nodes] == [(8, 1)]
