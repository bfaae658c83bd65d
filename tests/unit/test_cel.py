"""CEL literals and GFD label translation: no input can escape a string literal."""

from __future__ import annotations

import ast

from hypothesis import given
from hypothesis import strategies as st

from dracore import cel
from dracore.selectors import _SUFFIX, Requirement, family_to_architecture, requirement_to_cel

# CEL's string escapes (\\ \" \uXXXX \UXXXXXXXX) are a subset of Python's, so Python can decode
# our literals as a reference parser.
_NO_SURROGATES = st.text(alphabet=st.characters(blacklist_categories=("Cs",)))


@given(_NO_SURROGATES)
def test_string_literal_round_trips(value: str) -> None:
    literal = cel.string_literal(value)
    assert literal.startswith('"') and literal.endswith('"')
    assert ast.literal_eval(literal) == value
    assert all(0x20 <= ord(ch) <= 0x7E for ch in literal)  # plain ASCII, no raw newlines or quotes


@given(_NO_SURROGATES)
def test_label_values_stay_inside_literals(value: str) -> None:
    expression = requirement_to_cel(
        Requirement("nvidia.com/gpu.product", "In", (value,)), domain="gpu.nvidia.com"
    )
    prefix = (
        '"productName" in device.attributes["gpu.nvidia.com"] && '
        'device.attributes["gpu.nvidia.com"].productName.replace(" ", "-") == '
    )
    assert expression is not None and expression.startswith(prefix)
    # Whatever the value, everything after the operator is one literal that decodes back to it.
    decoded = ast.literal_eval(expression[len(prefix) :])
    assert decoded == _SUFFIX.sub("", value)


def test_lone_surrogates_are_replaced() -> None:
    assert cel.string_literal("a\ud800b") == '"a\\ufffdb"'


def test_family_names() -> None:
    assert family_to_architecture("ada-lovelace") == "Ada Lovelace"
    assert family_to_architecture("blackwell") == "Blackwell"


def test_untranslatable_requirements() -> None:
    assert (
        requirement_to_cel(Requirement("nvidia.com/gpu.product", "Gt", ("3",)), domain="d") is None
    )
    assert (
        requirement_to_cel(Requirement("nvidia.com/gpu.memory", "In", ("lots",)), domain="d")
        is None
    )
    assert requirement_to_cel(Requirement("nvidia.com/gpu.count", "In", ("8",)), domain="d") is None


def test_not_in_matches_devices_without_the_attribute() -> None:
    expression = requirement_to_cel(
        Requirement("nvidia.com/gpu.family", "NotIn", ("volta",)), domain="gpu.nvidia.com"
    )
    assert expression == (
        '!("architecture" in device.attributes["gpu.nvidia.com"]) || '
        '!(device.attributes["gpu.nvidia.com"].architecture == "Volta")'
    )
