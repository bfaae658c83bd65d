"""Fuzzing POST /mutate through the webhook's Endpoints with structured, partly hostile reviews.

For every review hypothesis builds: no 5xx, no exception escapes the endpoints (they are called
directly, so one fails the test instead of becoming a 500), a 200 answer is a well-formed response for
the same uid, a patch applies to the object it was computed from, and the review costs less
than REVIEW_CPU_BOUND seconds of CPU. The bound is CPU time of this process (not wall clock), so
a loaded machine does not make it flaky, and it is generous: a 1-GPU review costs about a
millisecond; what it catches is super-linear work (seconds for a big pod).

CI runs FUZZ_EXAMPLES (default 1,000) examples; `make fuzz` runs 100,000 and prints the count
and the slowest review (pytest -s).
"""

from __future__ import annotations

import base64
import gc
import json
import os
import time
from collections.abc import Iterator
from typing import Any

import jsonpatch
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.builders import EndpointsClient, make_policy, webhook_client
from webhook.admission.gateway import MemoryGateway
from webhook.settings import Settings

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "1000"))
# Containers, container lists and metadata of the wrong JSON type (FUZZ_SHAPES=0 leaves them out).
WRONG_SHAPES = os.environ.get("FUZZ_SHAPES", "1") == "1"
REVIEW_CPU_BOUND = 1.0  # seconds of CPU per review

RESOURCE_NAMES = st.sampled_from(
    ["nvidia.com/gpu", "nvidia.com/gpu.shared", "nvidia.com/mig-1g.10gb", "nvidia.com/", "cpu"]
)
COUNTS = st.one_of(
    st.integers(-3, 40).map(str),
    st.integers(0, 40),
    st.sampled_from(["٣", "1e3", "0x10", "", " 2", "9" * 400, "1.5", "2Gi", "-0"]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.none(),
    st.lists(st.integers(), max_size=2),
)
ANNOTATION_KEYS = st.sampled_from(
    [
        "kubectl-dra.io/rewritten",
        "kubectl-dra.io/skip",
        "kubectl-dra.io/pod-sharing",
        "kubectl-dra.io/shared-claim",
        "other/annotation",
    ]
)
ANNOTATION_VALUES = st.one_of(
    st.sampled_from(["true", "false", "", "team-gpu", '{"version": 1}', "[" * 200, "Bad Name!"]),
    st.text(max_size=20),
)
LABEL_TERMS = st.dictionaries(
    st.sampled_from(["nvidia.com/gpu.product", "nvidia.com/gpu.count", "zone"]),
    st.text(max_size=10),
    max_size=2,
)


def _anything(depth: int = 3) -> st.SearchStrategy[Any]:
    scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8))
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
        ),
        max_leaves=depth * 4,
    )


@st.composite
def containers(draw: Any, prefix: str) -> Any:
    if WRONG_SHAPES and draw(st.integers(0, 30)) == 17:
        return draw(_anything())  # not a list at all
    result: list[Any] = []
    for i in range(draw(st.integers(0, 4))):
        if WRONG_SHAPES and draw(st.integers(0, 20)) == 13:
            result.append(draw(_anything()))  # not a container
            continue
        c: dict[str, Any] = {
            "name": draw(st.sampled_from([f"{prefix}-{i}", "", "x" * 70])),
            "image": "x",
        }
        sections = {}
        for section in draw(
            st.lists(st.sampled_from(["limits", "requests"]), max_size=2, unique=True)
        ):
            sections[section] = draw(st.dictionaries(RESOURCE_NAMES, COUNTS, max_size=3))
        if sections:
            c["resources"] = sections
        if prefix == "init" and draw(st.booleans()):
            c["restartPolicy"] = draw(st.sampled_from(["Always", "Never", 3]))
        result.append(c)
    return result


@st.composite
def pods(draw: Any) -> Any:
    if WRONG_SHAPES and draw(st.integers(0, 40)) == 23:
        return draw(_anything())
    metadata: Any = {"namespace": "ml"}
    if draw(st.booleans()):
        metadata["name"] = draw(st.sampled_from(["train", "a" * 300, "Bad_Name", ""]))
    else:
        metadata["generateName"] = "train-"
    annotations = draw(st.dictionaries(ANNOTATION_KEYS, ANNOTATION_VALUES, max_size=3))
    if annotations:
        metadata["annotations"] = annotations
    if WRONG_SHAPES and draw(st.integers(0, 30)) == 17:
        metadata = draw(_anything())
    spec: dict[str, Any] = {"containers": draw(containers("app"))}
    init = draw(containers("init"))
    if init:
        spec["initContainers"] = init
    terms = draw(LABEL_TERMS)
    if terms:
        spec["nodeSelector"] = terms
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


@st.composite
def reviews(draw: Any) -> Any:
    operation = draw(st.sampled_from(["CREATE", "CREATE", "CREATE", "UPDATE", "DELETE", "EVIL\n"]))
    obj = draw(pods())
    request: dict[str, Any] = {
        "uid": draw(st.sampled_from(["u-1", "0f0f0f0f-1111-2222-3333-444444444444"])),
        "kind": {
            "group": "",
            "version": "v1",
            "kind": draw(st.sampled_from(["Pod", "Pod", "Job"])),
        },
        "operation": operation,
        "namespace": "ml",
        "object": obj,
        "dryRun": draw(st.booleans()),
    }
    if operation == "UPDATE":
        request["oldObject"] = draw(pods())
    if draw(st.integers(0, 40)) == 23:
        del request[draw(st.sampled_from(["uid", "operation", "object"]))]
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


class Tally:
    def __init__(self) -> None:
        self.count = 0
        self.slowest = 0.0
        self.statuses: dict[int, int] = {}


@pytest.fixture(scope="module")
def tally() -> Iterator[Tally]:
    result = Tally()
    yield result
    print(
        f"\nfuzz: {result.count} reviews, slowest {result.slowest * 1000:.1f} ms of CPU, "
        f"HTTP statuses {dict(sorted(result.statuses.items()))}"
    )


@pytest.fixture(scope="module")
def client() -> EndpointsClient:
    policy = make_policy(podSharing="Allowed", sharedClaims="Allowed", maxGPUsPerPod=8)
    return webhook_client(Settings(), policy=policy, gateway=MemoryGateway())


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
@given(body=reviews())
def test_any_review_gets_a_bounded_well_formed_answer(
    body: dict[str, Any], client: EndpointsClient, tally: Tally
) -> None:
    payload = json.dumps(body, allow_nan=True)
    # The collector is paused while the review runs: a full collection of what earlier examples
    # left (the in-memory gateway's templates, hypothesis' own data) is the harness's cost, not
    # the review's, and it runs right after, outside the measurement.
    gc.disable()
    try:
        started = time.process_time()
        resp = client.post("/mutate", data=payload, content_type="application/json")
        cpu = time.process_time() - started
    finally:
        gc.enable()
    tally.count += 1
    tally.slowest = max(tally.slowest, cpu)
    tally.statuses[resp.status] = tally.statuses.get(resp.status, 0) + 1
    assert resp.status < 500, resp.text()
    assert cpu < REVIEW_CPU_BOUND, f"a review took {cpu:.3f} s of CPU"
    if resp.status != 200:
        assert resp.status == 400 and resp.json()["error"]
        return
    response = resp.json()["response"]
    assert response["uid"] == body["request"]["uid"]
    status = response.get("status") or {}
    assert status.get("code") != 500, status  # an internal error, not a decision
    if "patch" in response:
        assert response["allowed"] is True and response["patchType"] == "JSONPatch"
        ops = json.loads(base64.b64decode(response["patch"]))
        patched = jsonpatch.apply_patch(body["request"]["object"], ops)
        assert isinstance(patched, dict)
