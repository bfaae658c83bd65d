"""What evaluating the live registration's matchConditions costs `kubectl dra audit` (offline).

    .venv/bin/python bench/audit_conditions.py [--workloads 1900] [--shapes 20]

Audit asks, for every workload, whether the API server would send its pods to the webhook
(kubectl_dra/audit/registrations.py): cel-python evaluates each matchCondition of the
registration `kubectl dra registration` generates for the built-in policy. Prints the time for
`--workloads` workloads spread over `--shapes` distinct pod templates (the verdict is
remembered per shape), and for every workload a shape of its own (no reuse).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from dracore import registration
from dracore.policy import Policy
from kubectl_dra.audit.registrations import registrations, unseen_reason

NAMESPACE = "ml"
LABELS = {"kubernetes.io/metadata.name": NAMESPACE}


def pod(shape: int) -> dict[str, Any]:
    containers = [
        {"name": f"c{i}", "image": "cuda", "resources": {"limits": {"nvidia.com/gpu": 1 + shape}}}
        for i in range(3)
    ]
    return {"metadata": {"labels": {"app": f"a{shape}"}}, "spec": {"containers": containers}}


def run(workloads: int, shapes: int) -> float:
    config = {
        "metadata": {"name": "kubectl-dra"},
        "webhooks": [registration.webhook_entry(Policy.default())],
    }
    hooks = registrations([config])
    pods = [pod(i % shapes) for i in range(workloads)]
    start = time.perf_counter()
    for p in pods:
        unseen_reason(
            hooks, pod=p, namespace=NAMESPACE, labels=LABELS, resources=["nvidia.com/gpu"]
        )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", type=int, default=1900)
    parser.add_argument("--shapes", type=int, default=20)
    args = parser.parse_args()
    shared = run(args.workloads, args.shapes)
    alone = run(args.workloads, args.workloads)
    print(f"{args.workloads} workloads, {args.shapes} pod shapes: {shared:.2f} s")
    print(
        f"{args.workloads} workloads, each its own shape: {alone:.2f} s "
        f"({alone / args.workloads * 1000:.1f} ms per workload)"
    )


if __name__ == "__main__":
    main()
