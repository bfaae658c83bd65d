"""Core throughput: pods translated per second (pure core) and reviews per second through
the webhook's Endpoints in-process (tests.builders.webhook_client), for three pod shapes.

    .venv/bin/python -m bench.core_bench [--seconds 2]

Prints one line per shape and the ratio of review cost to translation cost. Single-threaded,
so the numbers are per core. Aim: >= 5,000 pods/s in the core.

Then the time per review of a pod with 10, 1,000 and 10,000 containers (each asking for one GPU,
under podSharing: Always so the rewrite goes all the way): it must grow linearly, so the
last column (time per container) stays flat.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from dracore.policy import Policy
from dracore.translate import translate
from tests.builders import container, make_pod, make_review, webhook_client
from webhook.admission.gateway import MemoryGateway
from webhook.settings import Settings

SHAPES: dict[str, dict[str, Any]] = {
    "1-GPU pod": make_pod(container("app", gpus=1, limits={"cpu": "4", "memory": "16Gi"})),
    "8-GPU pod": make_pod(
        container("trainer", gpus=8, limits={"cpu": "32", "memory": "256Gi"}),
        nodeSelector={"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
    ),
    "4-container pod": make_pod(*(container(f"worker-{i}", gpus=2) for i in range(4))),
}


def rate(func: Callable[[], object], seconds: float) -> float:
    """Calls per second: the median of 5 rounds of `seconds / 5` each."""
    rounds = []
    for _ in range(5):
        count, start = 0, time.perf_counter()
        deadline = start + seconds / 5
        while time.perf_counter() < deadline:
            for _ in range(50):
                func()
            count += 50
        rounds.append(count / (time.perf_counter() - start))
    return statistics.median(rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    args = parser.parse_args()
    policy = Policy.default()
    client = webhook_client(Settings(), policy=policy, gateway=MemoryGateway())
    print(f"{'shape':<18}{'core pods/s':>14}{'reviews/s':>12}{'review/core cost':>18}")
    for name, pod in SHAPES.items():
        core = rate(lambda pod=pod: translate(pod, policy=policy, namespace="ml"), args.seconds)
        body = make_review(pod)

        def review(body: dict[str, Any] = body) -> None:
            response = client.post("/mutate", json=body)
            assert response.status == 200

        reviews = rate(review, args.seconds)
        print(f"{name:<18}{core:>14,.0f}{reviews:>12,.0f}{core / reviews:>17.1f}x")
    print()
    scaling()


def scaling() -> None:
    """Time per review against the number of containers (podSharing: Always, one GPU each)."""
    policy = Policy.from_mapping(
        {
            "apiVersion": "kubectl-dra.io/v1alpha1",
            "kind": "GPUPolicy",
            "spec": {"defaults": {"podSharing": "Always"}},
        }
    )
    settings = Settings(max_review_bytes=64 * 1024 * 1024)
    client = webhook_client(settings, policy=policy, gateway=MemoryGateway())
    print(f"{'containers':>10}{'ms/review':>12}{'us/container':>14}")
    for n in (10, 1_000, 10_000):
        body = make_review(make_pod(*(container(f"c{i}", gpus=1) for i in range(n))))
        rounds = []
        for _ in range(3):
            start = time.perf_counter()
            response = client.post("/mutate", json=body)
            rounds.append(time.perf_counter() - start)
            assert response.status == 200 and response.json()["response"]["allowed"]
        best = min(rounds)
        print(f"{n:>10,}{best * 1000:>12.1f}{best / n * 1e6:>14.1f}")


if __name__ == "__main__":
    main()
