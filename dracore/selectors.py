"""GPU Feature Discovery node labels -> CEL device selectors, guarded and normalised.

GFD labels describe a node's GPUs; under DRA the same facts are device attributes, so a pod that
pinned a GPU model with `nodeSelector` must say it in its claim instead. Only the per-device
labels are translated; node-level ones (gpu.count, gpu.machine, mig.strategy...) stay on the pod.

Normalisations: product names are compared after replacing spaces with dashes (GFD's sanitising),
with GFD's `-SHARED` / `-MIG-<profile>` suffixes removed from the label value; memory labels are
MiB where DRA capacity is bytes; families are lower-case-dashed where DRA architectures are
capitalised words. Every attribute read is guarded with `in`, so a device that lacks it simply
does not match instead of stopping the allocation attempt.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from dracore import cel
from dracore.errors import TranslationError, shown
from dracore.record import NodeRequirement

PRODUCT: Final = "nvidia.com/gpu.product"
MEMORY: Final = "nvidia.com/gpu.memory"
FAMILY: Final = "nvidia.com/gpu.family"
COMPUTE_MAJOR: Final = "nvidia.com/gpu.compute.major"
COMPUTE_MINOR: Final = "nvidia.com/gpu.compute.minor"
DEVICE_LABELS: Final = frozenset({PRODUCT, MEMORY, FAMILY, COMPUTE_MAJOR, COMPUTE_MINOR})

_SUFFIX = re.compile(r"(-SHARED|-MIG-[A-Za-z0-9.+]+)+$")
# What Go's strconv.ParseInt(value, 10, 64) reads, as the API server does for Gt and Lt.
_INTEGER = re.compile(r"[+-]?[0-9]+")
_INT64_DIGITS: Final = 19
# The largest MiB count whose bytes (and the next MiB's) are still an int64 quantity.
_MAX_MIB: Final = (cel.INT64_MAX >> 20) - 1


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    operator: str  # In | NotIn | Exists | DoesNotExist | Gt | Lt
    values: tuple[str, ...] = ()


def requirement_to_cel(req: Requirement, *, domain: str) -> str | None:
    """A CEL expression equivalent to a node requirement on a GFD device label, or None."""
    translate = _TRANSLATORS.get(req.key)
    return translate(req, domain) if translate else None


def _membership(req: Requirement, present: str, value_expr: str, literals: list[str]) -> str | None:
    if req.operator == "Exists":
        return present
    if req.operator == "DoesNotExist":
        return f"!({present})"
    if req.operator not in ("In", "NotIn") or not literals:
        return None
    member = (
        f"{value_expr} == {literals[0]}"
        if len(literals) == 1
        else f"{value_expr} in [{', '.join(literals)}]"
    )
    if req.operator == "In":
        return f"{present} && {member}"
    # A node without the label satisfies NotIn; so does a device without the attribute.
    return f"!({present}) || !({member})"


def _product(req: Requirement, domain: str) -> str | None:
    attrs = cel.attributes(domain)
    values = [_SUFFIX.sub("", v) for v in req.values]
    return _membership(
        req,
        cel.has_key(attrs, "productName"),
        f'{attrs}.productName.replace(" ", "-")',
        [cel.string_literal(v) for v in values],
    )


def family_to_architecture(family: str) -> str:
    """`ada-lovelace` -> `Ada Lovelace`, `hopper` -> `Hopper`."""
    return " ".join(word.capitalize() for word in family.split("-"))


def _family(req: Requirement, domain: str) -> str | None:
    attrs = cel.attributes(domain)
    return _membership(
        req,
        cel.has_key(attrs, "architecture"),
        f"{attrs}.architecture",
        [cel.string_literal(family_to_architecture(v)) for v in req.values],
    )


def parse_int64(text: str) -> int | None:
    """`text` as the API server parses a Gt/Lt value (sign, ASCII digits, int64), else None.

    The digits are counted before int(), so a value of thousands of digits costs nothing.
    """
    if not _INTEGER.fullmatch(text):
        return None
    digits = text.lstrip("+-").lstrip("0") or "0"
    if len(digits) > _INT64_DIGITS:
        return None
    value = -int(digits) if text.startswith("-") else int(digits)
    return value if cel.INT64_MIN <= value <= cel.INT64_MAX else None


def _integers(values: Sequence[str], *, bound: int = cel.INT64_MAX) -> list[int] | None:
    """Every value as an integer within +-`bound`, or None: a label value no device attribute
    can equal is left on the pod as a node label rather than written into CEL."""
    numbers = [parse_int64(v) for v in values]
    if not numbers or any(n is None or abs(n) > bound for n in numbers):
        return None
    return [n for n in numbers if n is not None]


def comparison_problem(req: Requirement) -> str | None:
    """Why the API server would refuse a Gt/Lt requirement, or None (other operators: None)."""
    if req.operator not in ("Gt", "Lt"):
        return None
    if len(req.values) != 1:
        return f"has {len(req.values)} values, and {req.operator} takes exactly one"
    if parse_int64(req.values[0]) is None:
        return f"value {shown(req.values[0])} is not an integer that fits in 64 bits (int64)"
    return None


def _memory(req: Requirement, domain: str) -> str | None:
    capacity = cel.capacity(domain)
    present = cel.has_key(capacity, "memory")
    if req.operator in ("Exists", "DoesNotExist"):
        return _membership(req, present, "", [])
    numbers = _integers(req.values, bound=_MAX_MIB)
    if numbers is None:
        return None

    def at_least(mib: int) -> str:
        return f'{capacity}.memory.compareTo(quantity("{mib}Mi")) >= 0'

    def below(mib: int) -> str:
        return f'{capacity}.memory.compareTo(quantity("{mib}Mi")) < 0'

    # GFD writes floor(bytes / MiB): label N means N MiB <= memory < N+1 MiB.
    if req.operator in ("In", "NotIn"):
        member = cel.any_of(f"{at_least(n)} && {below(n + 1)}" for n in numbers)
        if req.operator == "In":
            return f"{present} && ({member})"
        return f"!({present}) || !({member})"
    if req.operator == "Gt" and len(numbers) == 1:
        return f"{present} && {at_least(numbers[0] + 1)}"
    if req.operator == "Lt" and len(numbers) == 1:
        return f"{present} && {below(numbers[0])}"
    return None


def _compute(part: str) -> Callable[[Requirement, str], str | None]:
    def translate(req: Requirement, domain: str) -> str | None:
        attrs = cel.attributes(domain)
        present = cel.has_key(attrs, "cudaComputeCapability")
        value = f"{attrs}.cudaComputeCapability.{part}()"
        if req.operator in ("Exists", "DoesNotExist"):
            return _membership(req, present, value, [])
        numbers = _integers(req.values)
        if numbers is None:
            return None
        if req.operator in ("In", "NotIn"):
            return _membership(req, present, value, [cel.int_literal(n) for n in numbers])
        if req.operator in ("Gt", "Lt") and len(numbers) == 1:
            operator = ">" if req.operator == "Gt" else "<"
            return f"{present} && {value} {operator} {cel.int_literal(numbers[0])}"
        return None

    return translate


_TRANSLATORS: Final[dict[str, Callable[[Requirement, str], str | None]]] = {
    PRODUCT: _product,
    FAMILY: _family,
    MEMORY: _memory,
    COMPUTE_MAJOR: _compute("major"),
    COMPUTE_MINOR: _compute("minor"),
}


@dataclass(frozen=True, slots=True)
class NodeConstraintResult:
    selectors: tuple[str, ...]
    warnings: tuple[str, ...]


def translate_node_constraints(
    spec: dict[str, Any], *, mode: str, domain: str, who: str = "pod"
) -> NodeConstraintResult:
    """Turn GFD device labels in `spec` (modified in place) into CEL selectors.

    mode: Translate (CEL, drop the labels), Keep (CEL, keep the labels), Ignore (nothing).
    A Gt/Lt requirement on a device label that the API server would refuse raises
    TranslationError naming `who` and the field. Parts of the wrong type are left alone:
    the API server refuses them with its own message.
    """
    if mode == "Ignore":
        return NodeConstraintResult((), ())
    drop = mode == "Translate"
    selectors: list[str] = []
    warnings: list[str] = []

    node_selector = spec.get("nodeSelector") or {}
    for key in sorted(k for k in node_selector if k in DEVICE_LABELS):
        expression = requirement_to_cel(
            Requirement(key, "In", (str(node_selector[key]),)), domain=domain
        )
        if expression is None:
            warnings.append(
                f"nodeSelector {key}={node_selector[key]} kept: no device attribute matches it"
            )
            continue
        selectors.append(expression)
        if drop:
            del node_selector[key]
    if drop and "nodeSelector" in spec and not node_selector:
        del spec["nodeSelector"]

    terms = _required_terms(spec)
    if len(terms) == 1:
        translated = _translate_term(
            terms[0], _TERMS_FIELD + "[0]", domain=domain, drop=drop, warnings=warnings, who=who
        )
        selectors += translated
        # An empty term would match no node at all: drop the affinity it emptied instead.
        emptied = not terms[0].get("matchExpressions") and not terms[0].get("matchFields")
        if drop and translated and emptied:
            remove_required_affinity(spec)
    elif len(terms) > 1:
        # Terms are ORed: the CEL becomes an OR of each term's device part. The labels stay,
        # because a term's node-level and device-level parts cannot be separated.
        parts = [
            cel.all_of(
                _translate_term(
                    t, f"{_TERMS_FIELD}[{i}]", domain=domain, drop=False, warnings=warnings, who=who
                )
            )
            for i, t in enumerate(terms)
        ]
        combined = cel.any_of(parts)
        if combined != "true":
            selectors.append(combined)
            if drop:
                warnings.append(
                    "node affinity has several terms: its GPU labels are kept as well as translated"
                )
    return NodeConstraintResult(tuple(selectors), tuple(warnings))


_TERMS_FIELD: Final = (
    "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms"
)


def _required_terms(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The required node affinity's terms; [] when any part is of the wrong type."""
    node: Any = spec
    for key in ("affinity", "nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution"):
        node = node.get(key) if isinstance(node, dict) else None
    terms = node.get("nodeSelectorTerms") if isinstance(node, dict) else None
    if not isinstance(terms, list) or not all(isinstance(t, dict) for t in terms):
        return []
    return terms


def _translate_term(
    term: dict[str, Any], field: str, *, domain: str, drop: bool, warnings: list[str], who: str
) -> list[str]:
    selectors: list[str] = []
    kept = []
    expressions = term.get("matchExpressions")
    if not isinstance(expressions, list):
        return []
    for index, expr in enumerate(expressions):
        key = expr.get("key") if isinstance(expr, dict) else None
        values = expr.get("values") if isinstance(expr, dict) else None
        if key not in DEVICE_LABELS or not isinstance(values, list | None):
            kept.append(expr)
            continue
        req = Requirement(key, str(expr.get("operator")), tuple(str(v) for v in values or ()))
        problem = comparison_problem(req)
        if problem:
            raise TranslationError(
                f"{who}: {field}.matchExpressions[{index}] ({key} {req.operator}) {problem}; "
                "give one whole number from -9223372036854775808 to 9223372036854775807, "
                "as the API server requires"
            )
        expression = requirement_to_cel(req, domain=domain)
        if expression is None:
            warnings.append(
                f"node affinity on {key} ({req.operator}) kept: it has no device-attribute form"
            )
            kept.append(expr)
            continue
        selectors.append(expression)
    if drop and "matchExpressions" in term:
        if kept:
            term["matchExpressions"] = kept
        else:
            del term["matchExpressions"]
    return selectors


def remove_required_affinity(spec: dict[str, Any]) -> None:
    """Drop a required node affinity left without terms, and any parents it leaves empty."""
    affinity = spec["affinity"]
    node_affinity = affinity["nodeAffinity"]
    del node_affinity["requiredDuringSchedulingIgnoredDuringExecution"]
    if not node_affinity:
        del affinity["nodeAffinity"]
    if not affinity:
        del spec["affinity"]


# --- the translated terms, for UPDATE -------------------------------------------------------


def take_back_node_terms(
    spec: dict[str, Any],
    old_spec: Mapping[str, Any],
    recorded_selector: tuple[tuple[str, str], ...],
    recorded_affinity: tuple[NodeRequirement, ...],
) -> None:
    """Remove from `spec` the translated terms (as recorded) that `old_spec` does not have.

    What a re-applied legacy manifest puts back; anything else in `spec` stays.
    """
    node_selector, old_selector = spec.get("nodeSelector"), old_spec.get("nodeSelector") or {}
    if isinstance(node_selector, dict):
        for key, value in recorded_selector:
            if node_selector.get(key) == value and old_selector.get(key) != value:
                del node_selector[key]
        if not node_selector and "nodeSelector" not in old_spec:
            del spec["nodeSelector"]
    term, old_term = single_required_term(spec), single_required_term(old_spec)
    expressions = (term or {}).get("matchExpressions")
    if term is None or not isinstance(expressions, list) or not recorded_affinity:
        return
    old_expressions = (old_term or {}).get("matchExpressions") or []
    translated = set(recorded_affinity)
    kept = [e for e in expressions if e in old_expressions or _requirement(e) not in translated]
    if len(kept) == len(expressions):
        return
    if kept:
        term["matchExpressions"] = kept
        return
    del term["matchExpressions"]
    if not term.get("matchFields") and old_term is None:
        remove_required_affinity(spec)


def single_required_term(spec: Mapping[str, Any]) -> dict[str, Any] | None:
    """The one term of a required node affinity (translation only drops labels from one)."""
    affinity = spec.get("affinity")
    node_affinity = affinity.get("nodeAffinity") if isinstance(affinity, dict) else None
    required = (
        node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution")
        if isinstance(node_affinity, dict)
        else None
    )
    terms = required.get("nodeSelectorTerms") if isinstance(required, dict) else None
    if isinstance(terms, list) and len(terms) == 1 and isinstance(terms[0], dict):
        return terms[0]
    return None


def _requirement(expression: Any) -> NodeRequirement | None:
    if not isinstance(expression, Mapping):
        return None
    values = expression.get("values") or ()
    return NodeRequirement(
        str(expression.get("key")),
        str(expression.get("operator")),
        tuple(str(v) for v in values) if isinstance(values, list) else (),
    )


@dataclass(frozen=True, slots=True)
class NodeTerms:
    """The GPU-label terms of a pod's node constraints (what translation may take off)."""

    node_selector: tuple[tuple[str, str], ...] = ()
    node_affinity: tuple[NodeRequirement, ...] = ()

    @classmethod
    def of(cls, spec: Mapping[str, Any]) -> NodeTerms:
        node_selector = spec.get("nodeSelector")
        labels = node_selector if isinstance(node_selector, Mapping) else {}
        term = single_required_term(spec) or {}
        expressions = term.get("matchExpressions")
        return cls(
            tuple(sorted((k, str(v)) for k, v in labels.items() if k in DEVICE_LABELS)),
            tuple(
                r
                for e in (expressions if isinstance(expressions, list) else [])
                if (r := _requirement(e)) is not None and r.key in DEVICE_LABELS
            ),
        )

    def minus(self, other: NodeTerms) -> NodeTerms:
        """The terms of self that `other` no longer has: what the translation dropped."""
        return NodeTerms(
            tuple(t for t in self.node_selector if t not in other.node_selector),
            tuple(r for r in self.node_affinity if r not in other.node_affinity),
        )
