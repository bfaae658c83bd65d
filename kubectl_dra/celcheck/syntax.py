"""Parsing: celpy's lark tree, cel.bind expanded, flattened into a small syntax tree (Node)."""

from __future__ import annotations

import ast as pyast
from functools import cache
from typing import Any, Final, TypeAlias

import celpy
import lark
from celpy.celparser import CELParseError

from dracore.policy import MAX_CEL_LENGTH
from kubectl_dra.celcheck.budget import MAX_TREE_NODES, check_tree, too_large, tree_size
from kubectl_dra.celcheck.errors import CelError, CelTooExpensive
from kubectl_dra.celcheck.node import Node

MAX_EXPRESSION_BYTES: Final = MAX_CEL_LENGTH
DEVICE_FIELDS: Final = frozenset({"driver", "attributes", "capacity", "allowMultipleAllocations"})

Tree: TypeAlias = "lark.Tree[Any]"


_OPERATORS: Final = {
    "relation_lt": "<",
    "relation_le": "<=",
    "relation_gt": ">",
    "relation_ge": ">=",
    "relation_eq": "==",
    "relation_ne": "!=",
    "relation_in": "in",
    "addition_add": "+",
    "addition_sub": "-",
    "multiplication_mul": "*",
    "multiplication_div": "/",
    "multiplication_mod": "%",
}


def _position(tree: Tree | lark.Token) -> tuple[int, int]:
    if isinstance(tree, lark.Token):
        return tree.line or 0, tree.column or 0
    meta = tree.meta
    return (getattr(meta, "line", 0), getattr(meta, "column", 0)) if not meta.empty else (0, 0)


def _literal(token: lark.Token) -> Any:
    text = str(token)
    if token.type in ("STRING_LIT", "MLSTRING_LIT", "BYTES_LIT"):
        try:
            return pyast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text
    if token.type == "BOOL_LIT":
        return text == "true"
    if token.type == "NULL_LIT":
        return None
    try:
        return pyast.literal_eval(text.rstrip("uU"))
    except (ValueError, SyntaxError):
        return text


def _exprs(tree: Tree | None) -> tuple[Node, ...]:
    if tree is None:
        return ()
    return tuple(to_node(c) for c in tree.children if isinstance(c, lark.Tree))


def to_node(tree: Tree) -> Node:
    """celpy's grammar nests every level of precedence; flatten it into Node."""
    line, column = _position(tree)
    kids = tree.children
    data = tree.data
    if data in (
        "expr",
        "conditionalor",
        "conditionaland",
        "relation",
        "addition",
        "multiplication",
    ):
        if len(kids) == 1:
            return to_node(kids[0])
        if data == "expr":
            return Node("cond", tuple(to_node(k) for k in kids), None, line, column)
        if data == "conditionalor":
            return Node("or", (to_node(kids[0]), to_node(kids[1])), "||", line, column)
        if data == "conditionaland":
            return Node("and", (to_node(kids[0]), to_node(kids[1])), "&&", line, column)
        op_tree = kids[0]
        op = _OPERATORS[op_tree.data]
        left, right = to_node(op_tree.children[0]), to_node(kids[1])
        kind = "in" if op == "in" else ("rel" if data == "relation" else "arith")
        return Node(kind, (left, right), op, line, column)
    if data == "unary":
        if len(kids) == 1:
            return to_node(kids[0])
        kind = "not" if kids[0].data == "unary_not" else "neg"
        return Node(kind, (to_node(kids[1]),), None, line, column)
    if data in ("member", "primary"):
        return to_node(kids[0])
    if data == "member_dot":
        return Node("select", (to_node(kids[0]),), str(kids[1]), *_position(kids[1]))
    if data == "member_dot_arg":
        args = _exprs(kids[2]) if len(kids) > 2 else ()
        return Node(
            "call", (to_node(kids[0]), *args), str(kids[1]), *_position(kids[1]), target=True
        )
    if data == "member_index":
        return Node("index", (to_node(kids[0]), to_node(kids[1])), None, line, column)
    if data == "member_object":
        return Node("object", (to_node(kids[0]),), None, line, column)
    if data in ("ident_arg", "dot_ident_arg"):
        args = _exprs(kids[1]) if len(kids) > 1 else ()
        return Node("call", args, str(kids[0]), *_position(kids[0]))
    if data in ("ident", "dot_ident"):
        return Node("ident", (), str(kids[0]), *_position(kids[0]))
    if data == "paren_expr":
        return to_node(kids[0])
    if data == "list_lit":
        return Node("list", _exprs(kids[0]) if kids else (), None, line, column)
    if data == "map_lit":
        return Node("map", _exprs(kids[0]) if kids else (), None, line, column)
    if data == "literal":
        token = kids[0]
        assert isinstance(token, lark.Token)
        return Node("lit", (), _literal(token), *_position(token), raw=str(token))
    raise CelError(f"unsupported syntax ({data}) at line {line}, column {column}")


# --- cel.bind expansion on the lark tree ------------------------------------------------------


def _is_bind(tree: Tree) -> bool:
    if tree.data != "member_dot_arg" or str(tree.children[1]) != "bind":
        return False
    receiver = tree.children[0]
    while isinstance(receiver, lark.Tree) and receiver.data in ("member", "primary"):
        receiver = receiver.children[0]
    return (
        isinstance(receiver, lark.Tree)
        and receiver.data == "ident"
        and str(receiver.children[0]) == "cel"
    )


def _bound_name(tree: Tree) -> str | None:
    """The identifier of `cel.bind`'s first argument, however deeply wrapped."""
    node: Any = tree
    while isinstance(node, lark.Tree) and len(node.children) == 1:
        if node.data == "ident":
            return str(node.children[0])
        node = node.children[0]
    return None


def _substitute(tree: Tree, name: str, value: Tree) -> Tree:
    children: list[Any] = []
    for child in tree.children:
        if (
            isinstance(child, lark.Tree)
            and child.data == "ident"
            and str(child.children[0]) == name
            and tree.data == "primary"
        ):
            # Shared, not copied: nothing mutates the tree, and expansion was charged for it.
            children.append(lark.Tree("paren_expr", [value], tree.meta))
        elif isinstance(child, lark.Tree):
            children.append(_substitute(child, name, value))
        else:
            children.append(child)
    return lark.Tree(tree.data, children, tree.meta)


class _Expansion:
    """The nodes cel.bind substitutions may still build (each copies its value once per use)."""

    def __init__(self) -> None:
        self.left = 2 * MAX_TREE_NODES

    def charge(self, nodes: int) -> None:
        self.left -= nodes
        if self.left < 0:
            raise CelTooExpensive(too_large())


def _uses(tree: Tree, name: str) -> int:
    uses, stack = 0, [tree]
    while stack:
        node = stack.pop()
        if node.data == "ident" and node.children and str(node.children[0]) == name:
            uses += 1
        stack.extend(c for c in node.children if isinstance(c, lark.Tree))
    return uses


def expand_binds(tree: Tree, work: _Expansion | None = None) -> Tree:
    """Replace every `cel.bind(v, init, body)` by `(body[v := (init)])`, innermost first."""
    work = work or _Expansion()
    children = [expand_binds(c, work) if isinstance(c, lark.Tree) else c for c in tree.children]
    tree = lark.Tree(tree.data, children, tree.meta)
    if tree.data == "member" and isinstance(tree.children[0], lark.Tree):
        call = tree.children[0]
        if _is_bind(call):
            args = call.children[2].children if len(call.children) > 2 else []
            name = _bound_name(args[0]) if len(args) == 3 else None
            if name is None:
                line, column = _position(call.children[1])
                raise CelError(
                    f"cel.bind needs (identifier, value, expression) at line {line}, column {column}"
                )
            work.charge(tree_size(args[2]) + tree_size(args[1]))
            work.charge(_uses(args[2], name) * tree_size(args[1]))
            body = _substitute(args[2], name, args[1])
            return lark.Tree("member", [lark.Tree("primary", [lark.Tree("paren_expr", [body])])])
    return tree


# --- compile and check ------------------------------------------------------------------------


@cache
def environment() -> celpy.Environment:
    """celpy's environment: it holds no state of ours, so one serves every check."""
    return celpy.Environment()


def parse(expression: str) -> Tree:
    """The lark tree of `expression` with cel.bind expanded; CelError with line and column."""
    if len(expression.encode()) > MAX_EXPRESSION_BYTES:
        raise CelError(
            f"expression is {len(expression.encode())} bytes; the API server allows at most {MAX_EXPRESSION_BYTES}"
        )
    if not expression.strip():
        raise CelError(
            "expression is empty; write a CEL expression that is true for wanted devices"
        )
    try:
        tree = environment().compile(expression)
    except CELParseError as exc:
        where = f" at line {exc.line}, column {exc.column}" if exc.line else ""
        raise CelError(f"syntax error{where}: {_caret(expression, exc.line, exc.column)}") from None
    check_tree(tree)  # before anything recursive walks it
    expanded = expand_binds(tree)
    check_tree(expanded)
    return expanded


def _caret(expression: str, line: int | None, column: int | None) -> str:
    lines = expression.splitlines() or [""]
    if not line or line > len(lines):
        return "cannot parse the expression"
    text = lines[line - 1]
    near = text[max(0, (column or 1) - 1) :].strip()
    return f"near {near[:20]!r}" if near else "the expression ends too early"
