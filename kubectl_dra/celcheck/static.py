"""Static checks of a selector against the `device` variable, and `check`, the entry point."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from celpy import celtypes

from kubectl_dra.celcheck.budget import check_cost, literal_problems
from kubectl_dra.celcheck.errors import CelTooExpensive, Problem
from kubectl_dra.celcheck.evaluation import Program, compile_program, run
from kubectl_dra.celcheck.guards import attribute_read, string_literal, unguarded_reads
from kubectl_dra.celcheck.node import Node
from kubectl_dra.celcheck.syntax import DEVICE_FIELDS, Tree, parse, to_node
from kubectl_dra.celcheck.values import Quantity, Semver


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
    program: Program = field(repr=False, compare=False)

    def evaluate(self, device: celtypes.MapType) -> bool:
        """True/False for one device; raises CelEvaluationError like the scheduler would."""
        return run(self.program, device)


def evaluate(checked: Checked, device: celtypes.MapType) -> bool:
    return checked.evaluate(device)


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
        if name in ("quantity", "semver") and receiver is None and args and string_literal(args[0]):
            literal = string_literal(args[0]) or ""
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
        check_cost(root)
        problems = _static_problems(root) + literal_problems(root)
    except RecursionError:
        raise CelTooExpensive(
            "the expression is too expensive: it is nested too deeply to check (flatten it)"
        ) from None
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
    return Checked(expression, tree, tuple(problems), compile_program(tree))
