"""`kubectl dra classes --cluster`, the pure part, on a large simulated cluster (no API server).

    .venv/bin/python -m bench.classes_bench [--nodes 1000]

Builds the ResourceSlices of `--nodes` NVIDIA nodes x 8 GPUs (hack/fakegpu.py, A100 and H100
alternating, with two MIG-mode GPUs per A100 node so MIG classes are made too), then times,
3 times each (median shown): generating the built-in policy's classes for the published MIG
profiles, and comparing them with the cluster (every class's selectors on every device).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from collections.abc import Callable
from typing import Any

from dracore.classes import generate_classes, published_mig_profiles
from dracore.policy import Policy
from hack import fakegpu
from kubectl_dra.validate.deviceclasses import compare_classes

ROUNDS = 3


def median_seconds(work: Callable[[], Any]) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(ROUNDS):
        start = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    args = parser.parse_args()
    nodes = [
        dataclasses.replace(n, mig_gpus=(6, 7)) if n.model == fakegpu.A100_80GB else n
        for n in fakegpu.scale_nodes(args.nodes)
    ]
    slices = [fakegpu.make_slice(n) for n in nodes]
    devices = sum(len(s["spec"]["devices"]) for s in slices)
    policy = Policy.default()
    generate, generated = median_seconds(
        lambda: generate_classes(policy, mig_profiles=published_mig_profiles(slices))
    )
    compare, findings = median_seconds(
        lambda: compare_classes(
            generated.classes, device_classes=fakegpu.device_classes(), resource_slices=slices
        )
    )
    print(f"{len(nodes)} nodes, {devices} devices, {len(generated.classes)} classes")
    print(f"generate (with profile discovery): {generate * 1000:.1f} ms")
    print(f"compare with the cluster:          {compare * 1000:.0f} ms ({len(findings)} findings)")


if __name__ == "__main__":
    main()
