"""Evaluation: the `device` variable of a published device, and running a checked selector on it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from fractions import Fraction
from typing import Any, Final

from celpy import celtypes
from celpy.evaluation import CELEvalError, Evaluator

from kubectl_dra.celcheck.budget import MAX_EVALUATION_STEPS
from kubectl_dra.celcheck.syntax import Tree, environment
from kubectl_dra.celcheck.values import FUNCTIONS, Quantity, Semver


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


class CelEvaluationError(Exception):
    """The selector failed at run time for a device (e.g. it read a missing attribute)."""


# What a user's expression can make celpy or our functions raise on some device: a type or value
# it did not expect, a missing key, an overflow. Anything else is a bug here and propagates.
_EXPRESSION_FAILURES: Final = (TypeError, ValueError, ArithmeticError, LookupError)


class CelEvaluationTooExpensive(CelEvaluationError):
    """The selector used up its step budget on one device; evaluating it further is pointless."""


class _Steps:
    """The steps one evaluation may still take, shared by the evaluators of its comprehensions."""

    def __init__(self, limit: int) -> None:
        self.left = limit


class _BudgetedEvaluator(Evaluator):
    """celpy's evaluator, counting every tree node it visits against a step budget."""

    def __init__(self, ast: Tree, activation: Any, steps: _Steps) -> None:
        super().__init__(ast, activation=activation)
        self.steps = steps

    def visit(self, tree: Tree) -> Any:
        self.steps.left -= 1
        if self.steps.left < 0:
            raise CelEvaluationTooExpensive(
                f"the expression is too expensive: it took more than {MAX_EVALUATION_STEPS:,} "
                "evaluation steps on one device"
            )
        return super().visit(tree)

    def sub_evaluator(self, ast: Tree) -> Evaluator:
        return _BudgetedEvaluator(ast, self.activation, self.steps)


class Program:
    """A checked selector, ready to run on devices within MAX_EVALUATION_STEPS each."""

    def __init__(self, tree: Tree) -> None:
        self.runner = environment().program(tree, functions=FUNCTIONS)

    def evaluate(self, variables: Mapping[str, Any]) -> Any:
        steps = _Steps(MAX_EVALUATION_STEPS)
        evaluator = _BudgetedEvaluator(self.runner.ast, self.runner.new_activation(), steps)
        return evaluator.evaluate(dict(variables))


def compile_program(tree: Tree) -> Program:
    return Program(tree)


def run(program: Program, device: celtypes.MapType) -> bool:
    """True/False for one device; raises CelEvaluationError like the scheduler would."""
    try:
        result = program.evaluate({"device": device})
    except CelEvaluationTooExpensive:
        raise
    except CELEvalError as exc:
        raise CelEvaluationError(_eval_message(exc)) from None
    except RecursionError:
        raise CelEvaluationError("the expression is nested too deeply to evaluate") from None
    except _EXPRESSION_FAILURES as exc:
        raise CelEvaluationError(str(exc)) from None
    if isinstance(result, CELEvalError):
        raise CelEvaluationError(_eval_message(result))
    if not isinstance(result, celtypes.BoolType | bool):
        raise CelEvaluationError(f"the expression gave {result!r}, not a bool")
    return bool(result)


def _eval_message(exc: CELEvalError) -> str:
    text = str(exc.args[0]) if exc.args else "evaluation failed"
    return text.split(" (in activation", 1)[0]  # celpy appends its whole activation
