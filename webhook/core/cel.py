"""Building CEL device selectors from untrusted values.

Values a pod author wrote (label values) only ever enter an expression as literals made by
`string_literal` or `int` formatting, so no input can change the expression's structure.
"""

from __future__ import annotations

from collections.abc import Iterable


def string_literal(value: str) -> str:
    """A double-quoted CEL string literal for any Python string."""
    out = ['"']
    for ch in value:
        code = ord(ch)
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif 0x20 <= code <= 0x7E:
            out.append(ch)
        elif 0xD800 <= code <= 0xDFFF:  # a lone surrogate is not a character CEL accepts
            out.append("\\ufffd")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def string_list(values: Iterable[str]) -> str:
    return "[" + ", ".join(string_literal(v) for v in values) + "]"


def attributes(domain: str) -> str:
    return f"device.attributes[{string_literal(domain)}]"


def capacity(domain: str) -> str:
    return f"device.capacity[{string_literal(domain)}]"


def has_key(mapping: str, key: str) -> str:
    """`"key" in mapping`: reading a missing attribute is an error that stops allocation."""
    return f"{string_literal(key)} in {mapping}"


def all_of(parts: Iterable[str]) -> str:
    parts = [p for p in parts if p != "true"]
    if not parts:
        return "true"
    if len(parts) == 1:
        return parts[0]
    return " && ".join(f"({p})" if " || " in p else p for p in parts)


def any_of(parts: Iterable[str]) -> str:
    parts = list(parts)
    if "true" in parts:
        return "true"
    if len(parts) == 1:
        return parts[0]
    return " || ".join(f"({p})" for p in parts)
