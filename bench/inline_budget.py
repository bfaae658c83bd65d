"""What a review decided on the event loop costs per unit of `review_work`: the loop's budget.

    .venv/bin/python -m bench.inline_budget [--seconds 1]

For pods that grow in one dimension at a time (environment variables, node-affinity values,
containers), prints the work units `webhook.admission.budget.review_work` counts, the bytes of
the review, the time `Reviewer.answer` takes for it (parse, decide, patch, encode; offline, so
no API call) and the microseconds per unit. INLINE_WORK_UNITS is chosen so
that a review at the budget stays under about a millisecond on the loop. Single-threaded.
"""

from __future__ import annotations

import argparse
import json
import statistics
import timeit
from typing import Any

from dracore import admission_review as review
from dracore.policy import Policy
from tests.builders import container, make_pod, make_review
from webhook.admission.budget import INLINE_WORK_UNITS, review_work
from webhook.admission.decision import Admission
from webhook.admission.handler import Reviewer
from webhook.deadline import Deadline


def with_env(count: int) -> dict[str, Any]:
    app = container("app", gpus=1)
    app["env"] = [{"name": f"VAR_{i}", "value": "x"} for i in range(count)]
    return make_pod(app)


def with_affinity(values: int) -> dict[str, Any]:
    expression = {
        "key": "nvidia.com/gpu.product",
        "operator": "In",
        "values": [f"MODEL-{i}" for i in range(values)],
    }
    terms = [{"matchExpressions": [expression]}]
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}
        }
    }
    return make_pod(container("app", gpus=1), affinity=affinity)


def with_containers(count: int) -> dict[str, Any]:
    return make_pod(*(container(f"c{i}", gpus=1) for i in range(count)))


def seconds_per_call(reviewer: Reviewer, body: bytes, budget: float) -> float:
    """The median of 5 rounds, each about `budget / 5` seconds."""

    def call() -> None:
        reviewer.answer(body, "application/json", deadline=Deadline.after(5))

    timer = timeit.Timer(call)
    number, took = timer.autorange()
    number = max(1, int(number * budget / 5 / took))
    return statistics.median(timer.repeat(repeat=5, number=number)) / number


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    args = parser.parse_args()
    policy = Policy.default()
    reviewer = Reviewer(Admission(policy=lambda: policy, gateway=None))
    print(f"INLINE_WORK_UNITS = {INLINE_WORK_UNITS}")
    print(f"{'pod':<28}{'units':>7}{'bytes':>8}{'us/review':>11}{'us/unit':>9}")
    shapes = [
        *((f"{n} env vars", with_env(n)) for n in (10, 100, 400)),
        *((f"{n} affinity values", with_affinity(n)) for n in (10, 100, 400)),
        *((f"{n} containers", with_containers(n)) for n in (1, 10, 40)),
    ]
    for name, pod in shapes:
        body = json.dumps(make_review(pod)).encode()
        units = review_work(review.parse_request(json.loads(body)))
        seconds = seconds_per_call(reviewer, body, args.seconds)
        print(
            f"{name:<28}{units:>7}{len(body):>8}{seconds * 1e6:>11.0f}{seconds * 1e6 / units:>9.2f}"
        )


if __name__ == "__main__":
    main()
