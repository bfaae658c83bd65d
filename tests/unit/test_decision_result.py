"""The decision says what it needs: `decide_inline` answers, or names why it needs the API.

`Admission.decide_inline` never calls the API server: it returns an Outcome, or a Pending with
its reason. `Admission.review` decides with the calls, within the review's Deadline. Above it,
`Reviewer.answer_inline` routes each review: answered on the loop, or a Deferred for a thread
with the reason (also for large bodies and reviews over the loop's work budget).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from dracore import admission_review as review
from dracore.policy import Policy
from dracore.translate import SHARED_CLAIM_ANNOTATION
from tests.builders import container, make_pod, make_policy, make_review
from webhook.admission.budget import (
    CONTAINER_UNITS,
    INLINE_REVIEW_BYTES,
    INLINE_WORK_UNITS,
    review_work,
)
from webhook.admission.decision import Admission, Outcome, Pending, PendingReason
from webhook.admission.gateway import MemoryGateway
from webhook.admission.handler import LARGE_BODY, OVER_WORK_BUDGET, Deferred, Reply, Reviewer
from webhook.deadline import Deadline

LABELLED = make_policy(namespaces=[{"labels": {"gpu-sharing": "enabled"}, "sharing": "MPS"}])
SHARING = make_policy(sharedClaims="Allowed")


def parsed(pod: dict[str, Any], **kwargs: Any) -> review.AdmissionRequest:
    return review.parse_request(make_review(pod, **kwargs))


def admission(policy: Policy, gateway: MemoryGateway | None) -> Admission:
    return Admission(policy=lambda: policy, gateway=gateway)


def shared_pod() -> dict[str, Any]:
    return make_pod(container(gpus=1), annotations={SHARED_CLAIM_ANNOTATION: "team"})


@pytest.mark.parametrize(
    ("policy", "pod", "dry_run", "reason"),
    [
        (Policy.default(), make_pod(container(gpus=1)), False, PendingReason.UNSEEN_TEMPLATE),
        (LABELLED, make_pod(container(gpus=1)), False, PendingReason.NAMESPACE_LABELS),
        (SHARING, shared_pod(), False, PendingReason.SHARED_CLAIM),
        # A dry run creates nothing, but a named claim is still read to check it fits.
        (SHARING, shared_pod(), True, PendingReason.SHARED_CLAIM),
    ],
)
def test_inline_names_what_the_decision_needs_and_calls_nothing(
    policy: Policy, pod: dict[str, Any], dry_run: bool, reason: PendingReason
) -> None:
    gateway = MemoryGateway(namespaces={"ml": {"gpu-sharing": "enabled"}})
    decided = admission(policy, gateway).decide_inline(parsed(pod, dry_run=dry_run))
    assert decided == Pending(reason)
    assert gateway.calls == 0


def test_what_review_learned_lets_the_next_pod_be_decided_inline() -> None:
    gateway = MemoryGateway(namespaces={"ml": {"gpu-sharing": "enabled"}})
    deciding = admission(LABELLED, gateway)
    first = deciding.review(parsed(make_pod(container(gpus=1))), deadline=Deadline.after(5))
    assert first.decision == "patched" and gateway.calls == 2  # labels read, template made
    again = deciding.decide_inline(parsed(make_pod(container(gpus=1), name="second")))
    assert isinstance(again, Outcome) and again.decision == "patched"
    assert gateway.calls == 2


@pytest.mark.parametrize(
    ("gateway", "dry_run"),
    [(None, False), (MemoryGateway(), True)],
    ids=["offline", "dry-run-template"],
)
def test_no_api_call_needed_is_decided_inline(gateway: MemoryGateway | None, dry_run: bool) -> None:
    decided = admission(Policy.default(), gateway).decide_inline(
        parsed(make_pod(container(gpus=1)), dry_run=dry_run)
    )
    assert isinstance(decided, Outcome) and decided.decision == "patched"
    assert gateway is None or gateway.calls == 0


def test_every_api_call_gets_the_reviews_deadline() -> None:
    gateway = MemoryGateway()
    deadline = Deadline.after(3.0)
    admission(SHARING, gateway).review(parsed(shared_pod()), deadline=deadline)
    assert len(gateway.budgets) == 2  # read the claim, then create it
    assert all(0 < budget <= 3.0 for budget in gateway.budgets)


def test_a_spent_deadline_is_what_each_call_sees() -> None:
    gateway = MemoryGateway()
    spent = Deadline(expires_at=0.0, clock=lambda: 10.0)
    admission(Policy.default(), gateway).review(parsed(make_pod(container(gpus=1))), deadline=spent)
    assert gateway.budgets == [0.0]


# --- routing: Reviewer.answer_inline ---------------------------------------------------------


def body(pod: dict[str, Any]) -> bytes:
    return json.dumps(make_review(pod)).encode()


def route(policy: Policy, gateway: MemoryGateway | None, data: bytes) -> Reply | Deferred:
    reviewer = Reviewer(admission(policy, gateway))
    return reviewer.answer_inline(data, "application/json", deadline=Deadline.after(5))


def test_a_decided_review_is_answered_inline() -> None:
    result = route(Policy.default(), None, body(make_pod(container(gpus=1))))
    assert isinstance(result, Reply) and result.status == 200
    assert json.loads(result.body)["response"]["patchType"] == "JSONPatch"


def test_a_pending_review_is_deferred_with_its_reason_and_the_thread_decides_it() -> None:
    gateway = MemoryGateway()
    result = route(Policy.default(), gateway, body(make_pod(container(gpus=1))))
    assert isinstance(result, Deferred) and result.reason == "unseen-template"
    assert gateway.calls == 0
    reply = result.work()
    assert json.loads(reply.body)["response"]["allowed"] is True
    assert len(gateway.templates) == 1


def test_a_large_body_is_deferred_unparsed() -> None:
    pod = make_pod(container(gpus=1), annotations={"pad": "x" * INLINE_REVIEW_BYTES})
    result = route(Policy.default(), None, body(pod))
    assert isinstance(result, Deferred) and result.reason == LARGE_BODY
    assert json.loads(result.work().body)["response"]["allowed"] is True


def test_a_small_review_with_much_work_is_deferred() -> None:
    """1,200 environment variables fit in 32 KiB, but are more work than the loop may do."""
    app = container(gpus=1)
    app["env"] = [{"name": f"V{i}"} for i in range(1200)]
    data = body(make_pod(app))
    assert len(data) <= INLINE_REVIEW_BYTES
    result = route(Policy.default(), None, data)
    assert isinstance(result, Deferred) and result.reason == OVER_WORK_BUDGET
    assert json.loads(result.work().body)["response"]["patchType"] == "JSONPatch"


def test_an_invalid_review_is_refused_inline() -> None:
    result = route(Policy.default(), None, b"{not json")
    assert isinstance(result, Reply) and result.status == 400


# --- the work estimate ------------------------------------------------------------------------


def affinity(values: int) -> dict[str, Any]:
    expression = {"key": "k", "operator": "In", "values": [f"v{i}" for i in range(values)]}
    term = {"matchExpressions": [expression]}
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}
        }
    }


def test_work_counts_what_the_decision_walks() -> None:
    small = parsed(make_pod(container(gpus=1)))
    assert review_work(small) < 30
    wide = parsed(make_pod(container(gpus=1), affinity=affinity(2000)))
    assert review_work(wide) > INLINE_WORK_UNITS
    update = parsed(
        make_pod(container(gpus=1)), operation="UPDATE", old=make_pod(container(gpus=1))
    )
    assert review_work(update) == 2 * review_work(small)


@pytest.mark.parametrize(
    "spec",
    [{"containers": "x"}, {"containers": [None, 3]}, {"affinity": {"nodeAffinity": []}}, None],
)
def test_work_of_a_malformed_pod_is_small_and_does_not_fail(spec: Any) -> None:
    """Shapes the review decoder refuses first; the estimate must not rely on that."""
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec}
    request = review.AdmissionRequest("u", "Pod", "CREATE", "ml", "p", pod, dry_run=False)
    assert review_work(request) <= 1 + 2 * CONTAINER_UNITS
