"""Time per review against pod size: the JSON Patch must keep a review linear in the pod.

    .venv/bin/python -m bench.patch_scaling [--seconds 0.5] [--max-kib 3072]

A review here is the core's whole work on one AdmissionReview body: decode, parse, translate,
build the patched answer (dracore.patch). Two shapes, each grown from 1 KiB doubling up to the
API server's 3 MiB request limit:

- adversarial: one node-affinity term whose expressions alternate a repeated non-GPU key with
  a GPU label, so the rewrite drops every other member of a long list (the shape a general
  JSON diff spends super-linear time on);
- normal: a GPU container with a GPU nodeSelector and a growing list of environment variables.

Prints microseconds per review and for the patch alone, and the ratio to the previous size:
about 2 per doubling means linear.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from collections.abc import Callable
from typing import Any

from dracore import admission_review
from dracore.patch import make_patch
from dracore.policy import Policy
from dracore.translate import translate
from tests.builders import container, make_pod, make_review

POLICY = Policy.default()
API_SERVER_REQUEST_LIMIT_KIB = 3 * 1024


def adversarial_pod(units: int) -> dict[str, Any]:
    expressions: list[dict[str, Any]] = []
    for _ in range(units):
        expressions.append({"key": "zone", "operator": "In", "values": ["a"]})
        expressions.append(
            {"key": "nvidia.com/gpu.product", "operator": "In", "values": ["NVIDIA-A100"]}
        )
    term = {"matchExpressions": expressions}
    required = {"nodeSelectorTerms": [term]}
    return make_pod(
        affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": required}}
    )


def normal_pod(units: int) -> dict[str, Any]:
    app = container("trainer", gpus=2, limits={"cpu": "8", "memory": "64Gi"})
    app["env"] = [{"name": f"SETTING_{i}", "value": f"value-{i}"} for i in range(units)]
    return make_pod(app, nodeSelector={"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"})


def sized(shape: Callable[[int], dict[str, Any]], kib: int) -> bytes:
    """The review body of the largest pod of `shape` whose review is at most `kib` KiB."""

    def body(units: int) -> bytes:
        return json.dumps(make_review(shape(units))).encode()

    low, high = 0, 1  # body(low) fits; grow high until it does not, then bisect
    while len(body(high)) <= kib * 1024:
        low, high = high, high * 2
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if len(body(middle)) <= kib * 1024 else (low, middle)
    return body(low)


def review(data: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    request = admission_review.parse_request(admission_review.decode_body(data))
    result = translate(request.object, policy=POLICY, namespace=request.namespace)
    admission_review.build_patched(request.uid, old=request.object, new=result.pod)
    return dict(request.object), result.pod


def per_call_us(func: Callable[[], object], seconds: float) -> float:
    """Microseconds per call: the best of calls filling `seconds` (at least three).

    The garbage collector is off while timing, as timeit does: its passes over every live
    object would otherwise land on whichever size happens to trigger them."""
    best, spent, calls = float("inf"), 0.0, 0
    gc.collect()
    gc.disable()
    try:
        while spent < seconds or calls < 3:
            start = time.perf_counter()
            func()
            took = time.perf_counter() - start
            best, spent, calls = min(best, took), spent + took, calls + 1
    finally:
        gc.enable()
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5, help="time per measurement")
    parser.add_argument("--max-kib", type=int, default=API_SERVER_REQUEST_LIMIT_KIB)
    args = parser.parse_args()
    sizes = [1]
    while sizes[-1] * 2 < args.max_kib:
        sizes.append(sizes[-1] * 2)
    sizes.append(args.max_kib)
    for name, shape in (("adversarial", adversarial_pod), ("normal", normal_pod)):
        print(f"{name}: review KiB, µs/review, x prev, µs/patch, x prev")
        previous: tuple[float, float] | None = None
        for kib in sizes:
            data = sized(shape, kib)
            old, new = review(data)
            whole = per_call_us(lambda data=data: review(data), args.seconds)  # type: ignore[misc]
            alone = per_call_us(lambda old=old, new=new: make_patch(old, new), args.seconds)  # type: ignore[misc]
            ratios = (
                (f"{whole / previous[0]:5.2f}", f"{alone / previous[1]:5.2f}")
                if previous
                else ("    -", "    -")
            )
            print(
                f"  {len(data) / 1024:8.1f} {whole:12.0f} {ratios[0]} {alone:10.0f} {ratios[1]}",
                flush=True,
            )
            previous = (whole, alone)


if __name__ == "__main__":
    main()
