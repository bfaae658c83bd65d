"""AdmissionReview parsing and response builders."""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dracore import admission_review as review
from dracore import patch
from dracore.errors import BadReviewError
from tests.builders import container, make_pod, make_review


def test_parse_request_reads_the_fields_we_use() -> None:
    body = make_review(make_pod(name=None), dry_run=True, namespace="team")
    request = review.parse_request(body)
    assert (request.uid, request.kind, request.operation, request.namespace, request.dry_run) == (
        body["request"]["uid"],
        "Pod",
        "CREATE",
        "team",
        True,
    )
    assert request.name == ""  # generateName pods have no name at admission


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda r: r.update(kind="Pod"), 'kind is "Pod"; expected AdmissionReview'),
        (
            lambda r: r.update(apiVersion="admission.k8s.io/v1beta1"),
            "only admission.k8s.io/v1 is served",
        ),
        (lambda r: r.pop("request"), "request is missing"),
        (lambda r: r["request"].pop("uid"), "request.uid is missing"),
        (lambda r: r["request"].update(object="pod"), "request.object is missing or not an object"),
        (lambda r: r["request"].pop("operation"), "request.operation is missing"),
        (
            lambda r: r["request"].update(kind={"kind": "Job"}, object={"metadata": ["x"]}),
            "request.object.metadata: expected an object",
        ),
        (
            lambda r: r["request"].update(kind={"kind": "Job"}, oldObject={"metadata": "x"}),
            "request.oldObject.metadata: expected an object",
        ),
    ],
)
def test_broken_reviews_are_rejected_with_a_reason(mutate: Any, reason: str) -> None:
    body = make_review(make_pod())
    mutate(body)
    with pytest.raises(BadReviewError, match=reason):
        review.parse_request(body)


def test_non_object_body() -> None:
    with pytest.raises(BadReviewError, match="not a JSON object"):
        review.parse_request([1, 2])


def test_patched_response_applies_to_the_new_object() -> None:
    old = make_pod(container("app", gpus=1))
    new = make_pod(container("app"), annotations={"a/b~c": "1"})
    response = review.build_patched("u1", old=old, new=new, warnings=["w"])["response"]
    assert (response["uid"], response["allowed"], response["patchType"], response["warnings"]) == (
        "u1",
        True,
        "JSONPatch",
        ["w"],
    )
    operations = review.decode_patch({"response": response})
    assert jsonpatch.apply_patch(old, operations) == new


def test_no_patch_key_when_nothing_changed() -> None:
    pod = make_pod()
    response = review.build_patched("u1", old=pod, new=pod)["response"]
    assert "patch" not in response and "patchType" not in response


def test_denied_and_errored_shapes() -> None:
    denied = review.build_denied("u2", "no GPUs for you")
    assert denied["apiVersion"] == "admission.k8s.io/v1" and denied["kind"] == "AdmissionReview"
    assert denied["response"] == {
        "uid": "u2",
        "allowed": False,
        "status": {"code": 403, "message": "no GPUs for you", "reason": "Forbidden"},
    }
    errored = review.build_errored("u3")["response"]
    assert errored["status"]["code"] == 500 and "log" in errored["status"]["message"]


def test_long_warnings_are_clipped() -> None:
    warning = review.build_allowed("u", warnings=["x" * 1000])["response"]["warnings"][0]
    assert len(warning) == review.MAX_WARNING_LENGTH


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(["a", "b/c", "d~e", "f"]), children, max_size=4)
    ),
    max_leaves=20,
)


@given(_JSON.filter(lambda v: isinstance(v, dict)), _JSON.filter(lambda v: isinstance(v, dict)))
def test_make_patch_turns_old_into_new(old: dict[str, Any], new: dict[str, Any]) -> None:
    assert jsonpatch.apply_patch(old, patch.make_patch(old, new)) == new


def test_make_patch_is_empty_for_equal_documents() -> None:
    pod = make_pod(container("app", gpus=1))
    assert patch.make_patch(pod, copy.deepcopy(pod)) == []
