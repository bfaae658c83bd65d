"""Integers in node constraints: bounded before int(), never outside int64 in CEL."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dracore import cel
from dracore.errors import TranslationError
from dracore.selectors import COMPUTE_MAJOR, MEMORY, Requirement, parse_int64, requirement_to_cel
from dracore.translate import translate
from tests.builders import make_pod, make_policy

POLICY = make_policy()
TERM_FIELD = (
    "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
    ".nodeSelectorTerms[0].matchExpressions[1]"
)


def affinity_pod(*expressions: dict[str, Any]) -> dict[str, Any]:
    required = {"nodeSelectorTerms": [{"matchExpressions": list(expressions)}]}
    return make_pod(
        affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": required}}
    )


def requirement(key: str, operator: str, *values: Any) -> dict[str, Any]:
    return {"key": key, "operator": operator, "values": list(values)}


def selectors_of(pod: dict[str, Any]) -> list[str]:
    result = translate(pod, policy=POLICY, namespace="ml")
    (template,) = result.templates
    (request,) = template["spec"]["spec"]["devices"]["requests"]
    return [s["cel"]["expression"] for s in request["exactly"].get("selectors", [])]


@pytest.mark.parametrize(
    ("key", "operator", "values", "problem"),
    [
        (MEMORY, "Gt", ["9" * 5000], "is not an integer that fits in 64 bits"),
        (COMPUTE_MAJOR, "Lt", ["9" * 20], "is not an integer that fits in 64 bits"),
        (COMPUTE_MAJOR, "Gt", [str(2**63)], "is not an integer that fits in 64 bits"),
        (MEMORY, "Lt", ["-" + "9" * 19], "is not an integer that fits in 64 bits"),
        (COMPUTE_MAJOR, "Gt", ["8", "9"], "has 2 values, and Gt takes exactly one"),
        (COMPUTE_MAJOR, "Gt", [], "has 0 values, and Gt takes exactly one"),
        (MEMORY, "Gt", ["40 GiB"], "is not an integer"),
        ("nvidia.com/gpu.product", "Gt", ["1e3"], "is not an integer"),
    ],
    ids=["5000-digits", "20-digits", "2^63", "below-int64", "two", "none", "words", "product"],
)
def test_a_gpu_label_comparison_the_api_server_refuses_is_denied_with_the_field(
    key: str, operator: str, values: list[str], problem: str
) -> None:
    pod = affinity_pod(requirement("zone", "In", "a"), requirement(key, operator, *values))
    with pytest.raises(TranslationError) as err:
        translate(pod, policy=POLICY, namespace="ml")
    message = str(err.value)
    assert message.startswith('pod "ml/train": ' + TERM_FIELD)
    assert problem in message and "one whole number" in message
    assert len(message) < 400, "the pod author's value is cut short"


def test_a_comparison_on_another_label_is_left_to_the_api_server() -> None:
    odd = requirement("example.com/rank", "Gt", "9" * 5000)
    result = translate(affinity_pod(odd), policy=POLICY, namespace="ml")
    assert result.changed
    term = result.pod["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]["nodeSelectorTerms"][0]
    assert term["matchExpressions"] == [odd]


def test_signs_and_leading_zeros_read_as_the_api_server_reads_them() -> None:
    assert parse_int64("+007") == 7
    assert parse_int64("-0") == 0
    assert parse_int64("0" * 5000 + "42") == 42
    assert parse_int64(str(2**63 - 1)) == 2**63 - 1
    assert parse_int64(str(-(2**63))) == -(2**63)
    for text in (str(2**63), "", "+", "1.0", "٣", " 1", "0x10"):
        assert parse_int64(text) is None, text
    (expression,) = selectors_of(affinity_pod(requirement(COMPUTE_MAJOR, "Gt", "+007")))
    assert expression.endswith(".major() > 7")


def test_label_values_no_device_can_equal_stay_node_labels() -> None:
    huge = "9" * 25
    pod = affinity_pod(
        requirement(COMPUTE_MAJOR, "In", "8", huge), requirement(MEMORY, "NotIn", huge)
    )
    result = translate(pod, policy=POLICY, namespace="ml")
    term = result.pod["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]["nodeSelectorTerms"][0]
    assert [e["key"] for e in term["matchExpressions"]] == [COMPUTE_MAJOR, MEMORY]
    assert sum("kept: it has no device-attribute form" in w for w in result.warnings) == 2


def test_int_literal_refuses_what_cel_go_refuses() -> None:
    assert cel.int_literal(-(2**63)) == str(-(2**63))
    with pytest.raises(ValueError, match="int64"):
        cel.int_literal(2**63)


integer_text = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.from_regex(r"[+-]?0{0,30}[0-9]{1,25}", fullmatch=True),
)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([MEMORY, COMPUTE_MAJOR, "nvidia.com/gpu.compute.minor"]),
    st.sampled_from(["In", "NotIn", "Gt", "Lt"]),
    st.lists(integer_text, min_size=1, max_size=3),
)
def test_no_integer_label_value_writes_cel_the_api_server_cannot_compile(
    key: str, operator: str, values: list[str]
) -> None:
    expression = requirement_to_cel(
        Requirement(key, operator, tuple(values)), domain="gpu.nvidia.com"
    )
    if expression is not None:
        assert cel.check_expression(expression) is None, expression
