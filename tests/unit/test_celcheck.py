"""celcheck: parsing, static checks against `device`, guard analysis, Kubernetes functions."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubectl_dra import celcheck
from kubectl_dra.celcheck import CelError, CelEvaluationError, Quantity, Semver

NV = 'device.attributes["gpu.nvidia.com"]'
MEM = 'device.capacity["gpu.nvidia.com"].memory'

H100: dict[str, Any] = {
    "name": "gpu-0",
    "attributes": {
        "type": {"string": "gpu"},
        "architecture": {"string": "Hopper"},
        "productName": {"string": "NVIDIA H100 80GB HBM3"},
        "cudaComputeCapability": {"version": "9.0.0"},
        "resource.kubernetes.io/pcieRoot": {"string": "pci0000:00"},
        "numa": {"int": 1},
        "iommu": {"bool": True},
    },
    "capacity": {"memory": {"value": "80Gi"}},
}


def evaluate(expression: str, device: dict[str, Any] = H100) -> bool:
    checked = celcheck.check(expression)
    assert [p for p in checked.problems if p.severity == "error"] == []
    return checked.evaluate(celcheck.device_value(device, driver="gpu.nvidia.com"))


def messages(expression: str, severity: str) -> list[str]:
    return [p.message for p in celcheck.check(expression).problems if p.severity == severity]


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ('device.driver == "gpu.nvidia.com"', True),
        (f'{NV}.type == "gpu"', True),
        (f'{MEM}.compareTo(quantity("80Gi")) >= 0', True),
        (f'{MEM}.compareTo(quantity("81Gi")) >= 0', False),
        (f'{MEM}.isGreaterThan(quantity("40Gi"))', True),
        (f'{MEM}.isLessThan(quantity("40Gi"))', False),
        (f'{MEM}.add(quantity("1Gi")).compareTo(quantity("81Gi")) == 0', True),
        (f'{NV}.cudaComputeCapability.compareTo(semver("8.0.0")) >= 0', True),
        (f"{NV}.cudaComputeCapability.major() == 9", True),
        (f'{NV}.cudaComputeCapability.isLessThan(semver("10.0.0"))', True),
        (f'{NV}.productName.replace(" ", "-") == "NVIDIA-H100-80GB-HBM3"', True),
        (f'{NV}.architecture.lowerAscii() == "hopper"', True),
        (f'{NV}.architecture in ["Hopper", "Blackwell"]', True),
        (f'{NV}.productName.startsWith("NVIDIA A100")', False),
        ('device.attributes["resource.kubernetes.io"].pcieRoot == "pci0000:00"', True),
        (f"{NV}.numa == 1 && {NV}.iommu", True),
        (f'"uuid" in {NV}', False),
        (f"has({NV}.uuid)", False),
        (f'cel.bind(g, {NV}, g.architecture == "Hopper" && g.type == "gpu")', True),
        ('"x" in device.attributes["no.such.domain"]', False),
    ],
)
def test_selectors_evaluate_like_the_scheduler(expression: str, expected: bool) -> None:
    assert evaluate(expression) is expected


def test_reading_a_missing_attribute_is_a_runtime_error_not_false() -> None:
    with pytest.raises(CelEvaluationError, match="uuid"):
        evaluate(f'{NV}.uuid == "GPU-1"')


def test_a_missing_domain_is_an_empty_map() -> None:
    with pytest.raises(CelEvaluationError, match="x"):
        evaluate('device.attributes["no.such.domain"].x == 1')


@pytest.mark.parametrize(
    ("expression", "where"),
    [
        ('device.driver == "a" &&', "line 1, column 22"),
        ('device.driver ==\n  "a" ))', "line 2"),
        ("device.attributes[", "line 1"),
    ],
)
def test_syntax_errors_name_line_and_column(expression: str, where: str) -> None:
    with pytest.raises(CelError, match="syntax error") as info:
        celcheck.check(expression)
    assert where in str(info.value)


@pytest.mark.parametrize(
    ("expression", "needle"),
    [
        ('gpu.type == "a"', "undeclared reference to 'gpu'"),
        ('device.drivr == "a"', "device has no field 'drivr'"),
        ('frob(device.driver) == "a"', "unknown function frob()"),
        ('device.driver.frobnicate() == "a"', "unknown function frobnicate()"),
        ('cel.bindd(g, 1, g == 1) && device.driver == "a"', "unknown function cel.bindd()"),
        (f'{MEM} > quantity("1Gi")', "quantity values cannot be compared with >"),
        (f'{NV}.cudaComputeCapability.major() > 8 && semver("1.0.0") < semver("2.0.0")', "semver"),
        (f'{MEM}.compareTo(quantity("80GB")) >= 0', "'80GB' is not a quantity"),
        (f'{NV}.v.compareTo(semver("v1")) >= 0', "'v1' is not a semantic version"),
        ('device.driver + "x"', "gives a string, not a bool"),
        ("1 + 2", "gives a int, not a bool"),
    ],
)
def test_static_errors_are_reported_with_the_fix(expression: str, needle: str) -> None:
    assert any(needle in m for m in messages(expression, "error")), messages(expression, "error")


def test_the_expression_size_limit_is_the_api_servers() -> None:
    with pytest.raises(CelError, match="at most 10240"):
        celcheck.check('device.driver == "' + "a" * 10240 + '"')


def test_deep_nesting_is_a_clean_error_not_a_crash() -> None:
    with pytest.raises(CelError, match="nested too deeply"):
        celcheck.check("(" * 400 + "true" + ")" * 400)


def test_macro_variables_are_in_scope() -> None:
    assert messages('["a", "b"].exists(d, d == device.driver)', "error") == []


@pytest.mark.parametrize(
    "expression",
    [
        f'{NV}.uuid == "GPU-1"',
        f'device.driver == "gpu.nvidia.com" && {NV}.type == "gpu"',
        f'{NV}.type == "gpu" && "type" in {NV}',  # the guard comes too late
        f'{MEM}.compareTo(quantity("1Gi")) > 0',
        f'cel.bind(g, {NV}, g.architecture == "Hopper")',
        f'"uuid" in {NV} || {NV}.uuid == "x"',  # || runs the right side when the guard is false
    ],
)
def test_unguarded_reads_are_warned_about(expression: str) -> None:
    warnings = messages(expression, "warning")
    assert warnings, "expected a warning"
    assert "without a guard" in warnings[0] and " in device." in warnings[0]


@pytest.mark.parametrize(
    "expression",
    [
        f'"uuid" in {NV} && {NV}.uuid == "GPU-1"',
        f'has({NV}.uuid) && {NV}.uuid == "GPU-1"',
        f'!("uuid" in {NV}) || {NV}.uuid != "GPU-1"',
        f'has({NV}.uuid) ? {NV}.uuid == "GPU-1" : false',
        f'cel.bind(g, {NV}, "architecture" in g && g.architecture == "Hopper")',
        f'"memory" in device.capacity["gpu.nvidia.com"] && {MEM}.compareTo(quantity("1Gi")) > 0',
        'device.driver == "gpu.nvidia.com"',
    ],
)
def test_guarded_reads_are_not_warned_about(expression: str) -> None:
    assert messages(expression, "warning") == []


def test_the_webhooks_generated_selectors_check_clean() -> None:
    from dracore.selectors import Requirement, requirement_to_cel

    for key, operator, values in [
        ("nvidia.com/gpu.product", "In", ("NVIDIA-H100-80GB-HBM3",)),
        ("nvidia.com/gpu.memory", "Gt", ("40000",)),
        ("nvidia.com/gpu.family", "NotIn", ("ampere",)),
        ("nvidia.com/gpu.compute.major", "Gt", ("8",)),
    ]:
        expression = requirement_to_cel(Requirement(key, operator, values), domain="gpu.nvidia.com")
        assert expression is not None
        assert celcheck.check(expression).problems == ()
        assert isinstance(evaluate(expression), bool)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("80Gi", Fraction(80 * 2**30)),
        ("1.5", Fraction(3, 2)),
        ("500m", Fraction(1, 2)),
        ("1e3", Fraction(1000)),
        ("2k", Fraction(2000)),
        ("-1Ki", Fraction(-1024)),
    ],
)
def test_quantities_parse_exactly(text: str, value: Fraction) -> None:
    assert Quantity.parse(text).value == value


@pytest.mark.parametrize("text", ["80GB", "", "Gi", "1.2.3"])
def test_bad_quantities_are_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="not a quantity"):
        Quantity.parse(text)


def test_semver_orders_pre_releases_before_the_release() -> None:
    versions = ["1.0.0", "1.0.0-rc.1", "1.0.0-alpha", "0.9.9", "1.0.0-rc.2", "1.10.0"]
    ordered = sorted(Semver.parse(v) for v in versions)
    assert [str(v) for v in ordered] == [
        "0.9.9",
        "1.0.0-alpha",
        "1.0.0-rc.1",
        "1.0.0-rc.2",
        "1.0.0",
        "1.10.0",
    ]


PIECES = [
    "device",
    ".",
    "attributes",
    "capacity",
    "driver",
    '["gpu.nvidia.com"]',
    "[",
    "]",
    "(",
    ")",
    '"x"',
    "1",
    "2.5",
    "true",
    "null",
    "&&",
    "||",
    "!",
    "==",
    "<",
    "+",
    "in",
    "?",
    ":",
    ",",
    "has",
    'quantity("1Gi")',
    'semver("1.0.0")',
    ".compareTo",
    "cel.bind",
    "g",
    ".uuid",
    ".memory",
    "{",
    "}",
    "[1, 2]",
    ".exists(e, e > 1)",
    ".major()",
    '.replace("a", "b")',
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(PIECES), min_size=1, max_size=10))
def test_any_text_gives_a_finding_never_a_crash(pieces: list[str]) -> None:
    expression = " ".join(pieces)
    try:
        checked = celcheck.check(expression)
    except CelError as exc:
        assert str(exc)
        return
    try:
        checked.evaluate(celcheck.device_value(H100, driver="gpu.nvidia.com"))
    except CelEvaluationError as exc:
        assert str(exc)


# --- budgets: what an expression may cost to check and to run -------------------------------


def _doubling_binds(levels: int) -> str:
    """x0 = [1, 2], x1 = x0 + x0, ...: each level doubles what the expansion would copy."""
    expression = "cel.bind(x0, [1, 2], "
    for i in range(1, levels):
        expression += f"cel.bind(x{i}, x{i - 1} + x{i - 1}, "
    return expression + f"x{levels - 1}.size() > 0" + ")" * levels


def _nested_all(levels: int, width: int) -> str:
    items = "[" + ", ".join(str(i) for i in range(width)) + "]"
    expression = "true"
    for level in range(levels):
        expression = f"{items}.all(v{level}, {expression})"
    return expression


@pytest.mark.parametrize(
    "expression",
    [
        _doubling_binds(30),  # 2**30 copies if expanded blindly
        _nested_all(5, 20),  # 20**5 = 3.2 million steps
        "(" * 2000 + "true" + ")" * 2000,
        # each replace multiplies the length by the replacement's (63 characters at most)
        "device.driver" + '.replace("", device.driver)' * 4 + ".size() > 0",
    ],
    ids=["nested-binds", "nested-comprehensions", "deep-parentheses", "growing-strings"],
)
def test_expressions_beyond_the_budget_are_refused_as_too_expensive(expression: str) -> None:
    with pytest.raises(celcheck.CelTooExpensive, match="too expensive"):
        celcheck.check(expression)


def test_expressions_within_the_budget_still_check_and_evaluate() -> None:
    # 3 levels of binds: the expansion copies x0 four times, far below the bound
    assert evaluate(_doubling_binds(3).replace("> 0", "== 8")) is True
    # 10**2 = 100 iterations: within the static cost and the evaluation step budget
    assert evaluate(_nested_all(2, 10)) is True


@pytest.mark.parametrize(
    ("literal", "needle"),
    [
        ("9223372036854775808", "does not fit in int64"),  # 2**63
        ("18446744073709551616u", "does not fit in uint64"),  # 2**64
        ("1" + "0" * 400, "does not fit in int64"),
        ("1" * 5000, "does not fit in int64"),  # more digits than Python converts
        ('"\\ud800"', "lone surrogate"),
        ('"\\U00110000"', "not a Unicode code point"),
    ],
)
def test_literals_cel_go_refuses_are_errors(literal: str, needle: str) -> None:
    assert any(needle in m for m in messages(f"device.driver == {literal}", "error"))


@pytest.mark.parametrize(
    "literal", ["-9223372036854775808", "9223372036854775807", "18446744073709551615u", '"\\u00e9"']
)
def test_literals_at_the_edge_of_their_range_are_fine(literal: str) -> None:
    assert messages(f"device.driver == {literal}", "error") == []


def test_a_bug_in_evaluation_is_not_reported_as_a_selector_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only what a user's expression can cause becomes CelEvaluationError; our bugs propagate."""
    checked = celcheck.check('device.driver == "gpu.nvidia.com"')

    def broken(activation: Any) -> Any:
        raise AttributeError("a bug in our code")

    monkeypatch.setattr(checked.program, "evaluate", broken)
    with pytest.raises(AttributeError):
        checked.evaluate(celcheck.device_value(H100, driver="gpu.nvidia.com"))


def test_evaluation_stops_at_its_step_budget_with_a_too_expensive_error() -> None:
    # 30**3 = 27,000 iterations: under the static cost limit, far over the evaluation budget
    checked = celcheck.check(_nested_all(3, 30))
    with pytest.raises(celcheck.CelEvaluationTooExpensive, match="too expensive"):
        checked.evaluate(celcheck.device_value(H100, driver="gpu.nvidia.com"))
