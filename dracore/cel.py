"""Building CEL device selectors from untrusted values.

Values a pod author wrote (label values) only ever enter an expression as literals made by
`string_literal` or `int_literal`, so no input can change the expression's structure, and no
integer the API server's CEL compiler would refuse (outside int64) is ever written.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
UINT64_MAX: Final = 2**64 - 1


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


def int_literal(value: int) -> str:
    """A CEL int literal; ValueError outside int64, which cel-go refuses to compile."""
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(f"{value} does not fit in 64 bits (int64)")
    return str(value)


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


_LONE_SURROGATE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def check_expression(text: str) -> str | None:
    """Why the API server would refuse `text` as a CEL expression, or None if it parses.

    Parses with cel-python (a pure-Python CEL grammar, already a dependency) and then refuses
    what cel-go refuses but that grammar accepts: integer literals outside int64 (uint64 for
    `123u`) and escapes of lone UTF-16 surrogates. Problems name the line and column.
    """
    # Imported here: about a second to load and build the grammar, paid when a policy with
    # selectors is loaded, not by every importer of this module.
    from celpy.celparser import CELParseError, CELParser

    try:
        tree = CELParser().parse(text)
    except CELParseError as exc:
        line, column = getattr(exc, "line", None), getattr(exc, "column", None)
        source = text.splitlines()[line - 1] if line and line <= len(text.splitlines()) else ""
        near = source[max(0, (column or 1) - 11) : (column or 1) + 10].strip()
        return f"line {line}, column {column}: syntax error near {near!r}"
    except RecursionError:
        return "nested too deeply to parse"
    for token in tree.scan_values(lambda _: True):
        kind, value = getattr(token, "type", ""), str(token)
        where = f"line {token.line}, column {token.column}"
        if kind == "INT_LIT" and not INT64_MIN <= int(value, 0) <= INT64_MAX:
            return f"{where}: integer {value} does not fit in 64 bits (int64)"
        if kind == "UINT_LIT" and not 0 <= int(value[:-1], 0) <= UINT64_MAX:
            return f"{where}: integer {value} does not fit in 64 bits (uint64)"
        if (
            kind == "STRING_LIT"
            and not value.lower().startswith("r")
            and _LONE_SURROGATE.search(value)
        ):
            return (
                f"{where}: string {value[:40]} escapes a lone UTF-16 surrogate, which CEL refuses"
            )
    return None
