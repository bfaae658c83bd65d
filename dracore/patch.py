"""The JSON Patch (RFC 6902) of a review, in time linear in the size of the pod.

A general JSON diff (jsonpatch.make_patch) looks for moves between list members, which costs
time super-linear in the length of a list: a pod whose node affinity alternates a repeated
expression with a GPU label took seconds under 32 KiB and minutes near the API server's 3 MiB
request limit. A pod author chooses that shape, so the webhook cannot afford it.

The rewrite changes a pod in few ways, and these rules cover each of them without search:

- a subtree the rewrite did not touch is the same object in both pods (`translate` shares it),
  and is skipped by identity;
- mappings are walked key by key: removed keys, added keys, and changed values;
- a list that only lost members (GPU label expressions dropped from a term) is matched
  greedily, one pass over both lists, and the members it lost are removed, last first;
- a list that only gained members (a claim reference, a toleration) gets them added in order;
- any other list is paired position by position, after its common prefix and suffix.

Every member is compared a bounded number of times, and the patch never moves anything.
"""

from __future__ import annotations

from typing import Any, Final

Operation = dict[str, Any]

_REMOVED: Final = object()  # marks a list member with no counterpart


def escape(key: str) -> str:
    """A key as one JSON Pointer segment (RFC 6901): `nvidia.com/gpu` -> `nvidia.com~1gpu`."""
    return key.replace("~", "~0").replace("/", "~1")


def make_patch(old: Any, new: Any) -> list[Operation]:
    """RFC 6902 operations turning `old` into `new`; [] when they are equal."""
    operations: list[Operation] = []
    _diff(old, new, "", operations)
    return operations


def _diff(old: Any, new: Any, path: str, out: list[Operation]) -> None:
    if old is new:
        return
    if type(old) is dict and type(new) is dict:
        _diff_mappings(old, new, path, out)
    elif type(old) is list and type(new) is list:
        _diff_lists(old, new, path, out)
    elif not _same(old, new):
        out.append({"op": "replace", "path": path, "value": new})


def _diff_mappings(
    old: dict[str, Any], new: dict[str, Any], path: str, out: list[Operation]
) -> None:
    for key in old:
        if key not in new:
            out.append({"op": "remove", "path": f"{path}/{escape(key)}"})
    for key, value in new.items():
        if key not in old:
            out.append({"op": "add", "path": f"{path}/{escape(key)}", "value": value})
        else:
            _diff(old[key], value, f"{path}/{escape(key)}", out)


def _diff_lists(old: list[Any], new: list[Any], path: str, out: list[Operation]) -> None:
    if len(new) < len(old):
        lost = _lost_members(old, new)
        if lost is not None:
            # Last first, so every index still points at the member it named.
            out.extend({"op": "remove", "path": f"{path}/{i}"} for i in reversed(lost))
            return
    elif len(new) > len(old):
        gained = _lost_members(new, old)
        if gained is not None:
            out.extend({"op": "add", "path": f"{path}/{i}", "value": new[i]} for i in gained)
            return
    # Positional: skip the common prefix and suffix, pair what is left, then add or remove the
    # members one list has beyond the other.
    prefix = 0
    shortest = min(len(old), len(new))
    while prefix < shortest and _same(old[prefix], new[prefix]):
        prefix += 1
    suffix = 0
    while suffix < shortest - prefix and _same(old[-1 - suffix], new[-1 - suffix]):
        suffix += 1
    old_end, new_end = len(old) - suffix, len(new) - suffix
    paired = min(old_end, new_end) - prefix
    for offset in range(paired):
        index = prefix + offset
        _diff(old[index], new[index], f"{path}/{index}", out)
    rest = prefix + paired
    if old_end > new_end:
        out.extend({"op": "remove", "path": f"{path}/{rest}"} for _ in range(old_end - new_end))
    else:
        out.extend(
            {"op": "add", "path": f"{path}/{i}", "value": new[i]} for i in range(rest, new_end)
        )


def _lost_members(longer: list[Any], shorter: list[Any]) -> list[int] | None:
    """The indexes of `longer` to drop to get `shorter`, if `shorter` is a subsequence of it.

    Greedy matching decides subsequence exactly in one pass; each member is compared once.
    """
    lost: list[int] = []
    position = 0
    for index, member in enumerate(longer):
        if position < len(shorter) and _same(member, shorter[position]):
            position += 1
        else:
            lost.append(index)
    return lost if position == len(shorter) else None


def _same(a: Any, b: Any) -> bool:
    """Python's == (in C, fast). It equates true with 1 and 1 with 1.0, as jsonpatch does:
    harmless here, since the rewrite and the UPDATE path never change a value's type."""
    return bool(a == b)
