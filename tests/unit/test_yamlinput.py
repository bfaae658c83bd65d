"""The bounded YAML loader: what a hostile document costs, and the one-line errors it gets."""

from __future__ import annotations

import pytest

from dracore import yamlinput
from dracore.errors import PolicyError
from dracore.policy import Policy


def billion_laughs(levels: int) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        refs = ", ".join([f"*a{i - 1}"] * 10)
        lines.append(f"a{i}: &a{i} [{refs}]")
    return "\n".join(lines) + "\n"


def test_ordinary_anchors_are_read_like_plain_yaml() -> None:
    text = "base: &env [{name: A, value: '1'}]\nc1: {env: *env}\nc2: {env: *env}\n"
    assert yamlinput.load(text) == {
        "base": [{"name": "A", "value": "1"}],
        "c1": {"env": [{"name": "A", "value": "1"}]},
        "c2": {"env": [{"name": "A", "value": "1"}]},
    }


def test_alias_bomb_is_refused_before_it_is_built() -> None:
    text = billion_laughs(9)  # 10**9 leaves from under 700 bytes
    assert len(text) < 1000
    with pytest.raises(yamlinput.YamlInputError, match="aliases expand the document"):
        yamlinput.load(text)


def test_self_referencing_alias_is_refused() -> None:
    with pytest.raises(yamlinput.YamlInputError, match="refers to a node that contains it"):
        yamlinput.load("a: &x {b: *x}\n")


def test_nesting_deeper_than_the_bound_is_refused() -> None:
    text = "[" * (yamlinput.MAX_DEPTH + 1) + "]" * (yamlinput.MAX_DEPTH + 1)
    with pytest.raises(yamlinput.YamlInputError, match="levels deep"):
        yamlinput.load(text)
    ok = "[" * (yamlinput.MAX_DEPTH - 1) + "]" * (yamlinput.MAX_DEPTH - 1)
    assert yamlinput.load(ok) is not None


def test_syntax_error_names_line_and_column() -> None:
    with pytest.raises(yamlinput.YamlInputError, match=r"line 2, column \d+"):
        yamlinput.load("a: 1\nb: ]\nc: 2\n")


def test_huge_integer_is_an_error_not_a_traceback() -> None:
    with pytest.raises(yamlinput.YamlInputError, match="cannot be read"):
        yamlinput.load("n: " + "9" * 5000 + "\n")


def test_policy_file_with_alias_bomb_is_a_policy_error() -> None:
    with pytest.raises(PolicyError, match="aliases expand"):
        Policy.from_yaml(billion_laughs(8), source="bomb.yaml")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: {b: [{1: x}]}\n", "a.b[0]: key '1' at line 1, column 10 is an int, not a string"),
        ("a: {on: x}\nb: {2: y}\n", "a: key 'on' at line 1, column 5 is a bool"),
        ("a: &m {1.5: x}\nb: *m\n", "a: key '1.5' at line 1, column 8 is a float"),
        ("? [k]\n: v\n", "the top level: key a sequence at line 1, column 3 is a sequence"),
        ("kind: Pod\nmetadata: {name: p, labels: {~: x}}\n", 'Pod "p": metadata.labels: key'),
    ],
    ids=["nested-int", "first-in-document-order", "anchored", "complex-key", "names-object"],
)
def test_keys_that_are_not_strings_are_refused_with_path_and_place(text: str, message: str) -> None:
    with pytest.raises(yamlinput.NonStringKeyError) as err:
        yamlinput.load(text)
    assert message in str(err.value)
