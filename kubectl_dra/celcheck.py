"""CEL device selectors, offline: parse, check against the `device` variable, and evaluate.

Library: `cel-python` (`import celpy`, Cloud Custodian, Apache-2.0, pure Python on `lark`).
It was chosen over `common-expression-language` (Rust bindings, faster) because we need the
syntax tree: the static checks below (which variables and functions an expression uses, which
attribute reads are guarded) walk it, and parse errors carry a line and column. The Rust
bindings expose only the names an expression references, so none of that is possible there.
celpy calls `x.f(y)` as the Python function `f(x, y)`, which is how the Kubernetes extension
functions (quantity, semver, ext strings) are added here without touching the library.

What the API server checks that we approximate (DRA-REFERENCE §3):
- Type checking: CEL-go type-checks against `device`'s declared type. We check the shape
  (`device.driver|attributes|capacity|allowMultipleAllocations`), that every free variable is
  `device`, that every function exists in the Kubernetes environment, a few type errors users
  make (`<`/`>` on Quantity or Semver, which need `compareTo`), literal `quantity()`/`semver()`
  arguments, and that the result is a bool where that can be seen without types.
- The cost limit is not estimated; `kubectl create --dry-run=server` is the authority there.
- `cel.bind(v, init, body)` is not in celpy; it is expanded by substituting `init` for `v`
  in `body` before checking and evaluation (same result, only the evaluation cost differs).

Kubernetes semantics kept in evaluation: an attribute published without a domain is filed under
the driver name; `device.attributes["unknown.domain"]` is an empty map; reading a missing
attribute is an error (which stops allocation in the scheduler), not `false`.
"""

from __future__ import annotations

import ast as pyast
import copy
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from functools import total_ordering
from typing import Any, Final, Literal, TypeAlias

import celpy
import lark
from celpy import celtypes
from celpy.celparser import CELParseError
from celpy.evaluation import CELEvalError

from webhook.core.policy import MAX_CEL_LENGTH
from webhook.core.quantity import parse_quantity

MAX_EXPRESSION_BYTES: Final = MAX_CEL_LENGTH
DEVICE_FIELDS: Final = frozenset({"driver", "attributes", "capacity", "allowMultipleAllocations"})

Severity = Literal["error", "warning"]
Tree: TypeAlias = "lark.Tree[Any]"


class CelError(Exception):
    """An expression that cannot be compiled; the message says where and why."""


@dataclass(frozen=True, slots=True)
class Problem:
    severity: Severity
    message: str


# --- Kubernetes value types -------------------------------------------------------------------

_SEMVER = re.compile(
    r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
)


@total_ordering
@dataclass(frozen=True, slots=True)
class Quantity:
    """A resource.Quantity as an exact number ("80Gi", "500m", "1e3")."""

    value: Fraction
    text: str = field(compare=False, default="")

    @classmethod
    def parse(cls, text: str) -> Quantity:
        value = parse_quantity(text)
        if value is None:
            raise ValueError(f"{text!r} is not a quantity (examples: 80Gi, 1.5, 500m)")
        return cls(value, text)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Quantity):
            return NotImplemented
        return self.value < other.value

    def __str__(self) -> str:
        return self.text or str(self.value)


@total_ordering
@dataclass(frozen=True, slots=True)
class Semver:
    """A semantic version (2.0.0); build metadata is ignored in comparisons, as in Kubernetes."""

    major: int
    minor: int
    patch: int
    pre: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str, *, lenient: bool = False) -> Semver:
        if lenient and isinstance(text, str) and re.fullmatch(r"[0-9]+(\.[0-9]+)?", text):
            text += ".0" * (2 - text.count("."))
        match = _SEMVER.match(text) if isinstance(text, str) else None
        if not match:
            raise ValueError(f"{text!r} is not a semantic version (example: 1.2.3)")
        pre = tuple(match.group(4).split(".")) if match.group(4) else ()
        return cls(int(match.group(1)), int(match.group(2)), int(match.group(3)), pre)

    def _key(self) -> tuple[Any, ...]:
        # A release sorts after its pre-releases; numeric identifiers sort before alphanumeric.
        pre = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in self.pre)
        return (self.major, self.minor, self.patch, not self.pre, pre)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Semver):
            return NotImplemented
        return self._key() < other._key()

    def __str__(self) -> str:
        base = f"{self.major}.{self.minor}.{self.patch}"
        return f"{base}-{'.'.join(self.pre)}" if self.pre else base


# --- Kubernetes CEL functions (evaluation) ----------------------------------------------------


def _compare(a: Any, b: Any) -> celtypes.IntType:
    if type(a) is not type(b) or not isinstance(a, Quantity | Semver):
        raise TypeError(f"compareTo needs two quantities or two semvers, got {a!r} and {b!r}")
    return celtypes.IntType((a > b) - (a < b))


def _quantity_number(q: Any) -> Fraction:
    if isinstance(q, Quantity):
        return q.value
    if isinstance(q, int):
        return Fraction(int(q))
    raise TypeError(f"not a quantity: {q!r}")


def _parse_or_error(parse: Callable[[str], Any]) -> Callable[[Any], Any]:
    def convert(text: Any) -> Any:
        try:
            return parse(str(text))
        except ValueError as exc:
            raise ValueError(str(exc)) from None

    return convert


def _is(parse: Callable[[str], Any]) -> Callable[[Any], celtypes.BoolType]:
    def check(text: Any) -> celtypes.BoolType:
        try:
            parse(str(text))
        except ValueError:
            return celtypes.BoolType(False)
        return celtypes.BoolType(True)

    return check


def _index_of(target: Any, item: Any, *rest: Any) -> celtypes.IntType:
    if isinstance(target, str):
        return celtypes.IntType(target.find(item, int(rest[0]) if rest else 0))
    return celtypes.IntType(list(target).index(item) if item in target else -1)


def _last_index_of(target: Any, item: Any) -> celtypes.IntType:
    if isinstance(target, str):
        return celtypes.IntType(target.rfind(item))
    items = list(target)
    return celtypes.IntType(len(items) - 1 - items[::-1].index(item) if item in items else -1)


def _split(text: Any, sep: Any, *limit: Any) -> celtypes.ListType:
    parts = str(text).split(str(sep), int(limit[0]) - 1) if limit else str(text).split(str(sep))
    return celtypes.ListType([celtypes.StringType(p) for p in parts])


FUNCTIONS: Final[dict[str, Callable[..., Any]]] = {
    "quantity": _parse_or_error(Quantity.parse),
    "isQuantity": _is(Quantity.parse),
    "semver": _parse_or_error(Semver.parse),
    "isSemver": _is(Semver.parse),
    "compareTo": _compare,
    "isGreaterThan": lambda a, b: celtypes.BoolType(_compare(a, b) > 0),
    "isLessThan": lambda a, b: celtypes.BoolType(_compare(a, b) < 0),
    "add": lambda a, b: Quantity(_quantity_number(a) + _quantity_number(b)),
    "sub": lambda a, b: Quantity(_quantity_number(a) - _quantity_number(b)),
    "asInteger": lambda q: celtypes.IntType(int(_quantity_number(q))),
    "asApproximateFloat": lambda q: celtypes.DoubleType(float(_quantity_number(q))),
    "isInteger": lambda q: celtypes.BoolType(_quantity_number(q).denominator == 1),
    "sign": lambda q: celtypes.IntType((_quantity_number(q) > 0) - (_quantity_number(q) < 0)),
    "major": lambda v: celtypes.IntType(v.major),
    "minor": lambda v: celtypes.IntType(v.minor),
    "patch": lambda v: celtypes.IntType(v.patch),
    "replace": lambda s, old, new, *n: celtypes.StringType(
        str(s).replace(str(old), str(new), int(n[0]) if n else -1)
    ),
    "lowerAscii": lambda s: celtypes.StringType(str(s).lower()),
    "upperAscii": lambda s: celtypes.StringType(str(s).upper()),
    "trim": lambda s: celtypes.StringType(str(s).strip()),
    "split": _split,
    "join": lambda items, *sep: celtypes.StringType(
        (str(sep[0]) if sep else "").join(str(i) for i in items)
    ),
    "indexOf": _index_of,
    "lastIndexOf": _last_index_of,
    "substring": lambda s, start, *end: celtypes.StringType(
        str(s)[int(start) : int(end[0]) if end else None]
    ),
    "charAt": lambda s, i: celtypes.StringType(str(s)[int(i) : int(i) + 1]),
}


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Everything the Kubernetes CEL base environment offers beyond the CEL standard, so a valid
# expression is never reported as using an unknown function (only some are evaluated here).
_STANDARD: Final = _words(
    """
    size contains startsWith endsWith matches int uint double string bytes bool dyn type
    duration timestamp getDate getDayOfMonth getDayOfWeek getDayOfYear getFullYear getHours
    getMilliseconds getMinutes getMonth getSeconds has all exists exists_one map filter
    """
)
_KUBERNETES: Final = _words(
    """
    quantity isQuantity compareTo isGreaterThan isLessThan add sub asInteger
    asApproximateFloat isInteger sign semver isSemver major minor patch charAt indexOf
    lastIndexOf lowerAscii upperAscii replace split substring trim join format reverse
    isSorted sum min max find findAll url isURL getScheme getHost getHostname getPort
    getEscapedPath getQuery ip isIP cidr isCIDR family isUnspecified isLoopback
    isLinkLocalMulticast isLinkLocalUnicast isGlobalUnicast isCanonical containsIP
    containsCIDR prefixLength masked includes orValue hasValue value or optMap optFlatMap
    """
)
KNOWN_FUNCTIONS: Final = _STANDARD | _KUBERNETES
NAMESPACED_FUNCTIONS: Final = _words(
    """
    cel.bind sets.contains sets.equivalent sets.intersects strings.quote optional.of
    optional.ofNonZeroValue optional.none math.greatest math.least math.ceil math.floor
    math.round math.trunc math.abs math.sign math.isInf math.isNaN math.isFinite math.bitAnd
    math.bitOr math.bitXor math.bitNot math.bitShiftLeft math.bitShiftRight math.sqrt
    """
)
_MACROS_WITH_VARIABLE: Final = frozenset({"all", "exists", "exists_one", "map", "filter"})


# --- A small syntax tree over celpy's lark parse tree -----------------------------------------


@dataclass(frozen=True, slots=True)
class Node:
    """kind: and|or|not|neg|cond|rel|in|arith|select|index|call|ident|lit|list|map|object."""

    kind: str
    children: tuple[Node, ...] = ()
    value: Any = None  # operator, field, function name, identifier or literal value
    line: int = 0
    column: int = 0
    target: bool = False  # call: the first child is the receiver (`x.f(...)`)


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
        return Node("lit", (), _literal(token), *_position(token))
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
            children.append(lark.Tree("paren_expr", [copy.deepcopy(value)], tree.meta))
        elif isinstance(child, lark.Tree):
            children.append(_substitute(child, name, value))
        else:
            children.append(child)
    return lark.Tree(tree.data, children, tree.meta)


def expand_binds(tree: Tree) -> Tree:
    """Replace every `cel.bind(v, init, body)` by `(body[v := (init)])`, innermost first."""
    children = [expand_binds(c) if isinstance(c, lark.Tree) else c for c in tree.children]
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
            body = _substitute(args[2], name, args[1])
            return lark.Tree("member", [lark.Tree("primary", [lark.Tree("paren_expr", [body])])])
    return tree


# --- compile and check ------------------------------------------------------------------------

_ENVIRONMENT: celpy.Environment | None = None


def _environment() -> celpy.Environment:
    global _ENVIRONMENT
    if _ENVIRONMENT is None:
        _ENVIRONMENT = celpy.Environment()
    return _ENVIRONMENT


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
        tree = _environment().compile(expression)
    except CELParseError as exc:
        where = f" at line {exc.line}, column {exc.column}" if exc.line else ""
        raise CelError(f"syntax error{where}: {_caret(expression, exc.line, exc.column)}") from None
    return expand_binds(tree)


def _caret(expression: str, line: int | None, column: int | None) -> str:
    lines = expression.splitlines() or [""]
    if not line or line > len(lines):
        return "cannot parse the expression"
    text = lines[line - 1]
    near = text[max(0, (column or 1) - 1) :].strip()
    return f"near {near[:20]!r}" if near else "the expression ends too early"


@dataclass(frozen=True, slots=True)
class AttributeRead:
    kind: str  # attributes | capacity
    domain: str
    key: str

    def __str__(self) -> str:
        return f'device.{self.kind}["{self.domain}"].{self.key}'

    def guard(self) -> str:
        return f'"{self.key}" in device.{self.kind}["{self.domain}"]'


def _string(node: Node) -> str | None:
    return node.value if node.kind == "lit" and isinstance(node.value, str) else None


def _domain_map(node: Node) -> tuple[str, str] | None:
    """`device.attributes["d"]` -> ("attributes", "d")."""
    if node.kind != "index":
        return None
    base, key = node.children
    domain = _string(key)
    if (
        domain is not None
        and base.kind == "select"
        and base.value in ("attributes", "capacity")
        and base.children[0].kind == "ident"
        and base.children[0].value == "device"
    ):
        return str(base.value), domain
    return None


def attribute_read(node: Node) -> AttributeRead | None:
    """`device.attributes["d"].k` or `device.attributes["d"]["k"]`."""
    if node.kind == "select":
        owner, key = _domain_map(node.children[0]), node.value
    elif node.kind == "index":
        owner, key = _domain_map(node.children[0]), _string(node.children[1])
    else:
        return None
    return AttributeRead(owner[0], owner[1], key) if owner and key is not None else None


def _guard_of(node: Node) -> AttributeRead | None:
    if node.kind == "in":
        key, owner = _string(node.children[0]), _domain_map(node.children[1])
        return AttributeRead(owner[0], owner[1], key) if key is not None and owner else None
    if node.kind == "call" and node.value == "has" and len(node.children) == 1:
        return attribute_read(node.children[0])
    return None


def _when_true(node: Node) -> frozenset[AttributeRead]:
    guard = _guard_of(node)
    if guard:
        return frozenset({guard})
    if node.kind == "and":
        return _when_true(node.children[0]) | _when_true(node.children[1])
    if node.kind == "or":
        return _when_true(node.children[0]) & _when_true(node.children[1])
    if node.kind == "not":
        return _when_false(node.children[0])
    return frozenset()


def _when_false(node: Node) -> frozenset[AttributeRead]:
    if node.kind == "or":
        return _when_false(node.children[0]) | _when_false(node.children[1])
    if node.kind == "and":
        return _when_false(node.children[0]) & _when_false(node.children[1])
    if node.kind == "not":
        return _when_true(node.children[0])
    return frozenset()


def unguarded_reads(node: Node, guards: frozenset[AttributeRead] = frozenset()) -> list[Node]:
    """Attribute reads not protected by a preceding `"k" in ...` or `has(...)` check."""
    if node.kind == "call" and node.value == "has":
        return []
    read = attribute_read(node)
    if read is not None:
        return [] if read in guards else [node]
    left_guards = right_guards = guards
    if node.kind == "and":
        right_guards = guards | _when_true(node.children[0])
    elif node.kind == "or":
        right_guards = guards | _when_false(node.children[0])
    if node.kind == "cond":
        cond, yes, no = node.children
        return [
            *unguarded_reads(cond, guards),
            *unguarded_reads(yes, guards | _when_true(cond)),
            *unguarded_reads(no, guards | _when_false(cond)),
        ]
    found: list[Node] = []
    for i, child in enumerate(node.children):
        found += unguarded_reads(child, right_guards if i == 1 else left_guards)
    return found


# Coarse static types: enough to catch the mistakes users make, "dyn" when unknown.
_BOOL_RESULT: Final = frozenset({"and", "or", "not", "rel", "in"})
_BOOL_FUNCTIONS: Final = _words(
    """
    contains startsWith endsWith matches has all exists exists_one isQuantity isSemver
    isGreaterThan isLessThan isInteger isSorted isURL isIP isCIDR includes bool
    """
)


def _static_type(node: Node, scope: Mapping[str, str]) -> str:
    if node.kind in _BOOL_RESULT:
        return "bool"
    if node.kind == "lit":
        value = node.value
        if isinstance(value, bool):
            return "bool"
        return {int: "int", float: "double", str: "string", bytes: "bytes"}.get(
            type(value), "null" if value is None else "dyn"
        )
    if node.kind in ("list", "map"):
        return str(node.kind)
    if node.kind in ("arith", "neg"):
        kinds = {_static_type(child, scope) for child in node.children}
        return kinds.pop() if len(kinds) == 1 and kinds <= {"int", "double", "string"} else "dyn"
    if node.kind == "call":
        if node.value in ("quantity", "add", "sub"):
            return "quantity"
        if node.value == "semver":
            return "semver"
        if node.value in ("compareTo", "major", "minor", "patch", "sign", "asInteger", "size"):
            return "int"
        if node.value in _BOOL_FUNCTIONS:
            return "bool"
        if node.value in ("lowerAscii", "upperAscii", "replace", "trim", "substring", "charAt"):
            return "string"
        return "dyn"
    if node.kind == "select":
        owner = node.children[0]
        if owner.kind == "ident" and owner.value == "device":
            return {"driver": "string", "allowMultipleAllocations": "bool"}.get(node.value, "map")
    if attribute_read(node) and attribute_read(node).kind == "capacity":  # type: ignore[union-attr]
        return "quantity"
    if node.kind == "ident":
        return scope.get(str(node.value), "dyn")
    return "dyn"


@dataclass(frozen=True, slots=True)
class Checked:
    """A selector that parsed and passed the static checks, ready to evaluate."""

    expression: str
    tree: Tree
    problems: tuple[Problem, ...]

    def evaluate(self, device: celtypes.MapType) -> bool:
        """True/False for one device; raises CelEvaluationError like the scheduler would."""
        return evaluate(self, device)


class CelEvaluationError(Exception):
    """The selector failed at run time for a device (e.g. it read a missing attribute)."""


def _at(node: Node) -> str:
    return f" (line {node.line}, column {node.column})" if node.line else ""


def _static_problems(root: Node) -> list[Problem]:
    problems: list[Problem] = []
    scope: dict[str, str] = {}

    def visit(node: Node, bound: frozenset[str]) -> None:
        if node.kind == "ident":
            if node.value != "device" and node.value not in bound:
                problems.append(
                    Problem(
                        "error",
                        f"undeclared reference to {node.value!r}{_at(node)}: a device selector can only use the variable `device`",
                    )
                )
            return
        if node.kind == "select":
            owner = node.children[0]
            if (
                owner.kind == "ident"
                and owner.value == "device"
                and node.value not in DEVICE_FIELDS
            ):
                problems.append(
                    Problem(
                        "error",
                        f"device has no field {node.value!r}{_at(node)}; it has {', '.join(sorted(DEVICE_FIELDS))}",
                    )
                )
        if node.kind == "call":
            visit_call(node, bound)
            return
        if node.kind == "rel" and node.value in ("<", "<=", ">", ">="):
            for side in node.children:
                kind = _static_type(side, scope)
                if kind in ("quantity", "semver"):
                    problems.append(
                        Problem(
                            "error",
                            f"{kind} values cannot be compared with {node.value}{_at(node)}; use .compareTo(...) {node.value} 0 (or isGreaterThan/isLessThan)",
                        )
                    )
                    break
        for child in node.children:
            visit(child, bound)

    def visit_call(node: Node, bound: frozenset[str]) -> None:
        name = str(node.value)
        args = list(node.children)
        receiver = args.pop(0) if node.target else None
        if (
            receiver is not None
            and receiver.kind == "ident"
            and receiver.value
            in (
                "cel",
                "sets",
                "strings",
                "math",
                "optional",
            )
        ):
            qualified = f"{receiver.value}.{name}"
            if qualified not in NAMESPACED_FUNCTIONS:
                problems.append(Problem("error", f"unknown function {qualified}(){_at(node)}"))
            for arg in args:
                visit(arg, bound)
            return
        if name not in KNOWN_FUNCTIONS:
            problems.append(
                Problem(
                    "error",
                    f"unknown function {name}(){_at(node)}: not in the Kubernetes CEL environment",
                )
            )
        if name in ("quantity", "semver") and receiver is None and args and _string(args[0]):
            literal = _string(args[0]) or ""
            try:
                (Quantity.parse if name == "quantity" else Semver.parse)(literal)
            except ValueError as exc:
                problems.append(Problem("error", f"{name}({literal!r}){_at(node)}: {exc}"))
        if receiver is not None:
            visit(receiver, bound)
        if name in _MACROS_WITH_VARIABLE and receiver is not None and args:
            variable = args[0].value if args[0].kind == "ident" else None
            inner = bound | {str(variable)} if variable else bound
            for arg in args[1:]:
                visit(arg, inner)
            return
        for arg in args:
            visit(arg, bound)

    visit(root, frozenset())
    result_type = _static_type(root, scope)
    if result_type not in ("bool", "dyn"):
        problems.append(
            Problem(
                "error",
                f"the expression gives a {result_type}, not a bool; a selector must be true or false",
            )
        )
    return problems


def check(expression: str) -> Checked:
    """Parse and statically check; raises CelError for syntax, else problems on the result."""
    try:
        tree = parse(expression)
        root = to_node(tree)
        problems = _static_problems(root)
    except RecursionError:
        raise CelError("the expression is nested too deeply to check; flatten it") from None
    for node in unguarded_reads(root):
        read = attribute_read(node)
        problems.append(
            Problem(
                "warning",
                f"{read}{_at(node)} is read without a guard: on a device that lacks it the "
                f"selector fails and stops the allocation attempt instead of not matching; "
                f"write {read.guard() if read else ''} && ... first",
            )
        )
    return Checked(expression, tree, tuple(problems))


# --- evaluation -------------------------------------------------------------------------------


class _DomainMap(celtypes.MapType):
    """`device.attributes[d]` for a domain no attribute uses is an empty map, not an error."""

    def __missing__(self, key: Any) -> celtypes.MapType:
        return celtypes.MapType()


def _attribute_value(value: Mapping[str, Any]) -> Any:
    if "version" in value:
        try:
            return Semver.parse(str(value["version"]))
        except ValueError:
            return celtypes.StringType(str(value["version"]))
    if "bool" in value:
        return celtypes.BoolType(bool(value["bool"]))
    if "int" in value:
        return celtypes.IntType(int(value["int"]))
    if "string" in value:
        return celtypes.StringType(str(value["string"]))
    return celtypes.MapType()


def _by_domain(
    items: Mapping[str, Any], *, driver: str, convert: Callable[[Any], Any]
) -> _DomainMap:
    domains: dict[str, dict[celtypes.StringType, Any]] = {}
    for name, value in items.items():
        domain, _, key = name.rpartition("/")
        domains.setdefault(domain or driver, {})[celtypes.StringType(key)] = convert(value)
    return _DomainMap(
        {celtypes.StringType(d): celtypes.MapType(values) for d, values in domains.items()}
    )


def _capacity_value(value: Any) -> Quantity:
    raw = value.get("value") if isinstance(value, Mapping) else value
    try:
        return Quantity.parse(str(raw))
    except ValueError:
        return Quantity(Fraction(0), str(raw))


def device_value(device: Mapping[str, Any], *, driver: str) -> celtypes.MapType:
    """The `device` variable for one ResourceSlice device (v1 shape)."""
    return celtypes.MapType(
        {
            celtypes.StringType("driver"): celtypes.StringType(driver),
            celtypes.StringType("attributes"): _by_domain(
                device.get("attributes") or {}, driver=driver, convert=_attribute_value
            ),
            celtypes.StringType("capacity"): _by_domain(
                device.get("capacity") or {}, driver=driver, convert=_capacity_value
            ),
            celtypes.StringType("allowMultipleAllocations"): celtypes.BoolType(
                bool(device.get("allowMultipleAllocations"))
            ),
        }
    )


_PROGRAMS: dict[str, celpy.Runner] = {}


def evaluate(checked: Checked, device: celtypes.MapType) -> bool:
    program = _PROGRAMS.get(checked.expression)
    if program is None:
        program = _environment().program(checked.tree, functions=FUNCTIONS)
        _PROGRAMS[checked.expression] = program
    try:
        result = program.evaluate({"device": device})
    except CELEvalError as exc:
        raise CelEvaluationError(_eval_message(exc)) from None
    except RecursionError:
        raise CelEvaluationError("the expression is nested too deeply to evaluate") from None
    except Exception as exc:  # any failure of a user's expression is a finding, not a crash
        raise CelEvaluationError(str(exc)) from None
    if isinstance(result, CELEvalError):
        raise CelEvaluationError(_eval_message(result))
    if not isinstance(result, celtypes.BoolType | bool):
        raise CelEvaluationError(f"the expression gave {result!r}, not a bool")
    return bool(result)


def _eval_message(exc: CELEvalError) -> str:
    text = str(exc.args[0]) if exc.args else "evaluation failed"
    return text.split(" (in activation", 1)[0]  # celpy appends its whole activation
