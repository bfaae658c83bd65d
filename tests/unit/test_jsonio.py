"""dracore.jsonio: the one place the review path's JSON library is chosen."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from dracore import jsonio

_TREES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.text(st.characters(codec="utf-8") | st.characters(categories=["Cs"]), max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=25,
)


@given(_TREES)
def test_canonical_ascii_is_the_standard_librarys_canonical_form(value: Any) -> None:
    assert jsonio.canonical_ascii(value) == json.dumps(value, sort_keys=True, separators=(",", ":"))


@given(_TREES)
def test_clone_is_an_equal_tree_sharing_no_dict_or_list(value: Any) -> None:
    copied = jsonio.clone(value)
    assert copied == value

    def containers(tree: Any) -> list[int]:
        if isinstance(tree, dict):
            return [id(tree), *(i for v in tree.values() for i in containers(v))]
        if isinstance(tree, list):
            return [id(tree), *(i for v in tree for i in containers(v))]
        return []

    assert not set(containers(copied)) & set(containers(value))


def test_decode_problems_are_named() -> None:
    for data, problem in (
        (b"[" * 2000 + b"]" * 2000, "nested too deep"),
        (b'{"a": "\xff"}', "not UTF-8"),
        (b'"\\ud800"', "not UTF-8"),
    ):
        try:
            jsonio.loads(data)
        except jsonio.DecodeError as exc:
            assert jsonio.decode_problem(exc) == problem
        else:
            raise AssertionError(f"{data[:20]!r} decoded")
