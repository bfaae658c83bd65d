"""GPUPolicy: what the webhook does, per namespace. Parsed strictly into frozen dataclasses.

The document is the `policy.yaml` key of a ConfigMap (or that YAML on its own). Every problem
is reported with its field path and, for enumerations, the allowed values; unknown fields are
errors, because a misspelt key that is silently ignored is a policy nobody asked for.

Over 500 lines on purpose: the schema, its strict parser and the per-namespace resolution are
one document's rules, read together; split, the field list would be scattered over modules.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from dracore import cel, sharing, yamlinput
from dracore.errors import PolicyError, shown
from dracore.names import is_dns_label, is_dns_subdomain, is_extended_resource_name
from dracore.sharing import Dialect

API_VERSION: Final = "kubectl-dra.io/v1alpha1"
KIND: Final = "GPUPolicy"
CONFIGMAP_KEY: Final = "policy.yaml"

MODES: Final = ("Enforce", "Audit", "Disabled")
SHARING_MODES: Final = ("Exclusive", "TimeSlicing", "MPS")
INTERVALS: Final = ("Default", "Short", "Medium", "Long")
POD_SHARING: Final = ("Disabled", "Allowed", "Always")
SHARED_CLAIMS: Final = ("Disabled", "Allowed")
NODE_SELECTORS: Final = ("Translate", "Keep", "Ignore")
# Who serves a legacy request: the webhook's claim templates, or the scheduler through the
# generated DeviceClasses (KEP-5004); Auto takes the scheduler where it can, quietly.
PATHS: Final = ("Auto", "Templates", "Scheduler")
# A claim can hold at most 32 allocated devices (AllocationResultsMaxSize), so more per pod
# could never be scheduled.
MAX_DEVICES_PER_CLAIM: Final = 32
MAX_CEL_LENGTH: Final = 10 * 1024
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")


@dataclass(frozen=True, slots=True)
class MPSSettings:
    default_active_thread_percentage: int | None = 50
    default_pinned_device_memory_limit: str | None = None


@dataclass(frozen=True, slots=True)
class SharingRules:
    """The keys of `spec.defaults`, resolved for one namespace."""

    sharing: str = "Exclusive"
    time_slicing_interval: str = "Default"
    mps: MPSSettings = field(default_factory=MPSSettings)
    pod_sharing: str = "Disabled"
    shared_claims: str = "Disabled"
    max_gpus_per_pod: int = 16
    node_selectors: str = "Translate"
    # Off by default: under Enforce, an opt-out any pod author can write is no policy at all.
    allow_skip: bool = False
    path: str = "Auto"

    def sharing_parameters(self, dialect: Dialect | None, strategy: str) -> dict[str, Any] | None:
        """The opaque parameters `strategy` gets in `dialect` under these rules; None for
        Exclusive or a driver without a known dialect (no config at all)."""
        if strategy == "Exclusive" or dialect is None:
            return None
        return sharing.sharing_parameters(
            dialect,
            strategy,
            interval=self.time_slicing_interval,
            active_thread_percentage=self.mps.default_active_thread_percentage,
            pinned_memory_limit=self.mps.default_pinned_device_memory_limit,
        )


@dataclass(frozen=True, slots=True)
class ResourceRule:
    """A legacy extended resource and the DeviceClass that replaces it.

    A name ending in `*` matches by prefix (`nvidia.com/mig-*`); the rest of the resource name
    is the MIG profile, which the translation turns into a `profile` selector.
    """

    name: str
    device_class_name: str
    selector: str | None = None
    sharing: str | None = None
    path: str | None = None  # overrides the namespace rule's path for this resource

    @property
    def is_wildcard(self) -> bool:
        return self.name.endswith("*")

    def match(self, resource: str) -> str | None:
        """None if the rule does not apply; else the wildcard part ('' for an exact rule)."""
        if self.is_wildcard:
            prefix = self.name[:-1]
            rest = resource[len(prefix) :]
            return rest if resource.startswith(prefix) and rest else None
        return "" if resource == self.name else None


@dataclass(frozen=True, slots=True)
class NamespaceRule:
    """Matches a namespace named in `names`, or one carrying all of `labels`."""

    names: frozenset[str]
    labels: tuple[tuple[str, str], ...]
    rules: SharingRules

    def matches(self, namespace: str, namespace_labels: Mapping[str, str]) -> bool:
        if namespace in self.names:
            return True
        return bool(self.labels) and all(namespace_labels.get(k) == v for k, v in self.labels)


DEFAULT_RESOURCES: Final = (
    ResourceRule("nvidia.com/gpu", "gpu.nvidia.com"),
    ResourceRule("nvidia.com/gpu.shared", "gpu.nvidia.com", sharing="TimeSlicing"),
    ResourceRule("nvidia.com/mig-*", "mig.nvidia.com"),
)


@dataclass(frozen=True, slots=True)
class Policy:
    mode: str = "Enforce"
    resources: tuple[ResourceRule, ...] = DEFAULT_RESOURCES
    defaults: SharingRules = field(default_factory=SharingRules)
    namespaces: tuple[NamespaceRule, ...] = ()
    exempt_namespaces: frozenset[str] = frozenset({"kube-system"})
    digest: str = "builtin"
    # What is valid but probably not meant (`field.path: message`), shown by validate and convert.
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def needs_namespace_labels(self) -> bool:
        """True if some namespace rule selects by label (the webhook must then read namespaces)."""
        return any(rule.labels for rule in self.namespaces)

    def rules_for(
        self, namespace: str, namespace_labels: Mapping[str, str] | None = None
    ) -> SharingRules:
        labels = namespace_labels or {}
        for rule in self.namespaces:
            if rule.matches(namespace, labels):
                return rule.rules
        return self.defaults

    # Exact rules by name, then the wildcard rules in order: every container's every resource
    # name is looked up on each review, most of them (cpu, memory) matching nothing.
    _exact: dict[str, ResourceRule] = field(init=False, repr=False, compare=False)
    _prefixes: tuple[tuple[str, ResourceRule], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        exact: dict[str, ResourceRule] = {}
        for rule in self.resources:
            if not rule.is_wildcard:
                exact.setdefault(rule.name, rule)
        object.__setattr__(self, "_exact", exact)
        prefixes = tuple((rule.name[:-1], rule) for rule in self.resources if rule.is_wildcard)
        object.__setattr__(self, "_prefixes", prefixes)

    def resource_rule(self, resource: str) -> tuple[ResourceRule, str] | None:
        """The rule for a legacy resource name (exact rules win over wildcards), with its profile."""
        rule = self._exact.get(resource)
        if rule is not None:
            return rule, ""
        for prefix, rule in self._prefixes:
            if resource.startswith(prefix) and len(resource) > len(prefix):
                return rule, resource[len(prefix) :]
        return None

    @classmethod
    def default(cls) -> Policy:
        return cls()

    @classmethod
    def from_mapping(cls, document: Any, *, source: str = "policy") -> Policy:
        """Parse a GPUPolicy document, or a ConfigMap holding one under `policy.yaml`."""
        if isinstance(document, Mapping) and document.get("kind") == "ConfigMap":
            return cls.from_configmap(document, source=source)
        problems: list[str] = []
        try:
            policy = _parse_policy(document, problems)
        except (RecursionError, ValueError, TypeError, AttributeError) as exc:
            # The parser checks shapes as it goes; this is the net under it, so that every
            # rejected edit is reported as a PolicyError, whatever went wrong.
            raise PolicyError(
                [f"cannot be read ({type(exc).__name__}: {shown(str(exc), 120)})"], source=source
            ) from None
        if problems or policy is None:
            raise PolicyError(problems, source=source)
        return policy

    @classmethod
    def from_configmap(cls, configmap: Mapping[str, Any], *, source: str = "ConfigMap") -> Policy:
        metadata = configmap.get("metadata")
        name = metadata.get("name") if isinstance(metadata, Mapping) else None
        where = f"ConfigMap {shown(name)}" if isinstance(name, str) and name else source
        data = configmap.get("data")
        if not isinstance(data, Mapping) or CONFIGMAP_KEY not in data:
            raise PolicyError(
                [f"data.{CONFIGMAP_KEY}: missing; put the GPUPolicy there"], source=where
            )
        text = data[CONFIGMAP_KEY]
        if not isinstance(text, str):
            raise PolicyError(
                [
                    f"data.{CONFIGMAP_KEY}: must be a string holding the GPUPolicy YAML, not {shown(text)}"
                ],
                source=where,
            )
        return cls.from_yaml(text, source=f"{where} data.{CONFIGMAP_KEY}")

    @classmethod
    def from_yaml(cls, text: str, *, source: str = "policy") -> Policy:
        try:
            document = yamlinput.load(text)
        except yamlinput.YamlInputError as exc:
            raise PolicyError([str(exc)], source=source) from None
        return cls.from_mapping(document, source=source)

    @classmethod
    def from_file(cls, path: str | Path) -> Policy:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise PolicyError([f"cannot read: {exc.strerror}"], source=str(path)) from None
        except UnicodeDecodeError as exc:
            raise PolicyError(
                [f"not UTF-8 text (byte {exc.start}); save the policy as UTF-8 YAML"],
                source=str(path),
            ) from None
        return cls.from_yaml(text, source=str(path))


# --- parsing -----------------------------------------------------------------------------------

_TOP_KEYS = ("apiVersion", "kind", "metadata", "spec")
_SPEC_KEYS = ("mode", "resources", "defaults", "namespaces", "exemptNamespaces")
_RULE_KEYS = (
    "sharing",
    "timeSlicing",
    "mps",
    "podSharing",
    "sharedClaims",
    "maxGPUsPerPod",
    "nodeSelectors",
    "allowSkip",
    "path",
)
_RESOURCE_KEYS = ("name", "deviceClassName", "selector", "sharing", "path")


def _one_of(value: Any, allowed: Iterable[str], path: str, problems: list[str]) -> str | None:
    allowed = tuple(allowed)
    if value in allowed:
        return str(value)
    problems.append(f"{path}: {shown(value)} is not one of {', '.join(allowed)}")
    return None


def _check_keys(value: Any, allowed: Iterable[str], path: str, problems: list[str]) -> bool:
    """Report a non-mapping or unknown keys; True if `value` is a mapping worth reading."""
    if not isinstance(value, Mapping):
        problems.append(f"{path}: must be a mapping, not {_type_name(value)}")
        return False
    allowed = tuple(allowed)
    for key in value:
        if key not in allowed:
            problems.append(f"{path}.{key}: unknown field (allowed: {', '.join(allowed)})")
    return True


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


def _parse_policy(document: Any, problems: list[str]) -> Policy | None:
    if document is None:
        problems.append("empty document; expected a GPUPolicy")
        return None
    if not _check_keys(document, _TOP_KEYS, "(top level)", problems):
        return None
    if document.get("apiVersion") != API_VERSION:
        problems.append(f"apiVersion: {shown(document.get('apiVersion'))} must be {API_VERSION}")
    if document.get("kind") != KIND:
        problems.append(f"kind: {shown(document.get('kind'))} must be {KIND}")
    spec = document.get("spec") or {}
    if not _check_keys(spec, _SPEC_KEYS, "spec", problems):
        return None

    mode = _one_of(spec.get("mode", "Enforce"), MODES, "spec.mode", problems)
    resources = _parse_resources(spec.get("resources"), problems)
    raw_defaults = spec.get("defaults") or {}
    defaults = _parse_rules(raw_defaults, SharingRules(), "spec.defaults", problems)
    namespaces = _parse_namespaces(spec.get("namespaces") or [], raw_defaults, problems)
    exempt = _parse_names(
        spec.get("exemptNamespaces", ["kube-system"]), "spec.exemptNamespaces", problems
    )
    if defaults is None or mode is None:
        return None
    policy = Policy(
        mode=mode,
        resources=resources,
        defaults=defaults,
        namespaces=namespaces,
        exempt_namespaces=frozenset(exempt),
        digest=_digest(document),
        warnings=_registration_warnings(resources),
    )
    _check_sharing_dialects(policy, problems)
    return policy


def _registration_warnings(resources: tuple[ResourceRule, ...]) -> tuple[str, ...]:
    """Rules the registration shipped in manifests/ does not send: it is generated from the
    built-in policy's resources, so another name needs a registration made from this policy."""
    shipped = {rule.name for rule in Policy.default().resources}
    return tuple(
        f"spec.resources[{i}].name: the registration shipped in manifests/ sends only pods asking "
        f"for the built-in policy's resources, so pods asking for {rule.name} reach the webhook "
        "only once the registration is made from this policy (`kubectl dra registration "
        "--policy FILE`; the Helm chart makes it from values.policy)"
        for i, rule in enumerate(resources)
        if rule.name not in shipped
    )


def _digest(document: Any) -> str:
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def _parse_names(value: Any, path: str, problems: list[str]) -> list[str]:
    if not isinstance(value, list):
        problems.append(f"{path}: must be a list of namespace names, not {_type_name(value)}")
        return []
    names = []
    for i, name in enumerate(value):
        if is_dns_label(name):
            names.append(name)
        else:
            problems.append(f"{path}[{i}]: {shown(name)} is not a valid namespace name")
    return names


def _parse_resources(value: Any, problems: list[str]) -> tuple[ResourceRule, ...]:
    if value is None:
        return DEFAULT_RESOURCES
    if not isinstance(value, list) or not value:
        problems.append("spec.resources: must be a non-empty list of {name, deviceClassName}")
        return ()
    rules: list[ResourceRule] = []
    seen: set[str] = set()
    for i, item in enumerate(value):
        path = f"spec.resources[{i}]"
        if not _check_keys(item, _RESOURCE_KEYS, path, problems):
            continue
        name = item.get("name")
        plain = name[:-1] + "x" if isinstance(name, str) and name.endswith("*") else name
        if not is_extended_resource_name(plain):
            problems.append(
                f"{path}.name: {shown(name)} is not an extended resource name "
                "such as nvidia.com/gpu (a trailing * matches by prefix)"
            )
            continue
        if name in seen:
            problems.append(f"{path}.name: {name} is listed twice")
        seen.add(name)
        device_class = item.get("deviceClassName")
        if not is_dns_subdomain(device_class):
            problems.append(
                f"{path}.deviceClassName: {shown(device_class)} is not a valid "
                "DeviceClass name (a DNS subdomain such as gpu.nvidia.com)"
            )
            continue
        selector = item.get("selector")
        if selector is not None and (not isinstance(selector, str) or not selector.strip()):
            problems.append(f"{path}.selector: must be a non-empty CEL expression string")
            selector = None
        elif isinstance(selector, str) and len(selector.encode()) > MAX_CEL_LENGTH:
            problems.append(f"{path}.selector: longer than the API limit of {MAX_CEL_LENGTH} bytes")
            selector = None
        elif isinstance(selector, str) and (problem := cel.check_expression(selector)):
            # Found now rather than by every pod of this resource being denied later.
            problems.append(f"{path}.selector: not a valid CEL expression: {problem}")
            selector = None
        rule_sharing = item.get("sharing")
        if rule_sharing is not None:
            rule_sharing = _one_of(rule_sharing, SHARING_MODES, f"{path}.sharing", problems)
        rule_path = item.get("path")
        if rule_path is not None:
            rule_path = _one_of(rule_path, PATHS, f"{path}.path", problems)
        rules.append(ResourceRule(name, device_class, selector, rule_sharing, rule_path))
    return tuple(rules)


def _parse_rules(
    raw: Any, base: SharingRules, path: str, problems: list[str]
) -> SharingRules | None:
    if not _check_keys(raw, _RULE_KEYS, path, problems):
        return None
    result = base
    if "sharing" in raw:
        value = _one_of(raw["sharing"], SHARING_MODES, f"{path}.sharing", problems)
        result = _replace(result, sharing=value)
    if "timeSlicing" in raw and _check_keys(
        raw["timeSlicing"], ("interval",), f"{path}.timeSlicing", problems
    ):
        interval = raw["timeSlicing"].get("interval", "Default")
        value = _one_of(interval, INTERVALS, f"{path}.timeSlicing.interval", problems)
        result = _replace(result, time_slicing_interval=value)
    if "mps" in raw:
        result = _replace(result, mps=_parse_mps(raw["mps"], base.mps, f"{path}.mps", problems))
    if "podSharing" in raw:
        value = _one_of(raw["podSharing"], POD_SHARING, f"{path}.podSharing", problems)
        result = _replace(result, pod_sharing=value)
    if "sharedClaims" in raw:
        value = _one_of(raw["sharedClaims"], SHARED_CLAIMS, f"{path}.sharedClaims", problems)
        result = _replace(result, shared_claims=value)
    if "maxGPUsPerPod" in raw:
        limit = raw["maxGPUsPerPod"]
        if (
            isinstance(limit, bool)
            or not isinstance(limit, int)
            or not 0 <= limit <= MAX_DEVICES_PER_CLAIM
        ):
            problems.append(
                f"{path}.maxGPUsPerPod: {shown(limit)} must be a whole number from 0 to "
                f"{MAX_DEVICES_PER_CLAIM} (DRA allocates at most {MAX_DEVICES_PER_CLAIM} devices per claim)"
            )
        else:
            result = _replace(result, max_gpus_per_pod=limit)
    if "nodeSelectors" in raw:
        value = _one_of(raw["nodeSelectors"], NODE_SELECTORS, f"{path}.nodeSelectors", problems)
        result = _replace(result, node_selectors=value)
    if "path" in raw:
        value = _one_of(raw["path"], PATHS, f"{path}.path", problems)
        result = _replace(result, path=value)
    if "allowSkip" in raw:
        if isinstance(raw["allowSkip"], bool):
            result = _replace(result, allow_skip=raw["allowSkip"])
        else:
            problems.append(f"{path}.allowSkip: {shown(raw['allowSkip'])} must be true or false")
    return result


def _replace(rules: SharingRules, **changes: Any) -> SharingRules:
    """dataclasses.replace, ignoring values that failed to parse (already reported)."""
    from dataclasses import replace

    return replace(rules, **{k: v for k, v in changes.items() if v is not None})


def _parse_mps(raw: Any, base: MPSSettings, path: str, problems: list[str]) -> MPSSettings | None:
    keys = ("defaultActiveThreadPercentage", "defaultPinnedDeviceMemoryLimit")
    if not _check_keys(raw, keys, path, problems):
        return None
    percentage = raw.get("defaultActiveThreadPercentage", base.default_active_thread_percentage)
    if percentage is not None and (
        isinstance(percentage, bool)
        or not isinstance(percentage, int)
        or not 0 <= percentage <= 100
    ):
        problems.append(
            f"{path}.defaultActiveThreadPercentage: {shown(percentage)} must be a whole number from 0 to 100"
        )
        percentage = base.default_active_thread_percentage
    limit = raw.get("defaultPinnedDeviceMemoryLimit", base.default_pinned_device_memory_limit)
    if limit is not None and (not isinstance(limit, str) or not _QUANTITY.match(limit)):
        problems.append(
            f"{path}.defaultPinnedDeviceMemoryLimit: {shown(limit)} must be a quantity such as 10Gi"
        )
        limit = base.default_pinned_device_memory_limit
    return MPSSettings(percentage, limit)


def _parse_namespaces(
    value: Any, raw_defaults: Any, problems: list[str]
) -> tuple[NamespaceRule, ...]:
    if not isinstance(value, list):
        problems.append(f"spec.namespaces: must be a list, not {_type_name(value)}")
        return ()
    base_raw = raw_defaults if isinstance(raw_defaults, Mapping) else {}
    base = _parse_rules(base_raw, SharingRules(), "spec.defaults", []) or SharingRules()
    rules = []
    for i, item in enumerate(value):
        path = f"spec.namespaces[{i}]"
        if not _check_keys(item, ("names", "labels", *_RULE_KEYS), path, problems):
            continue
        names = _parse_names(item.get("names", []), f"{path}.names", problems)
        labels = item.get("labels") or {}
        if not isinstance(labels, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
        ):
            problems.append(f"{path}.labels: must map label keys to string values")
            labels = {}
        if not names and not labels:
            problems.append(f"{path}: needs names or labels to say which namespaces it covers")
        overrides = {k: v for k, v in item.items() if k in _RULE_KEYS}
        parsed = _parse_rules(overrides, base, path, problems)
        if parsed is not None:
            rules.append(NamespaceRule(frozenset(names), tuple(sorted(labels.items())), parsed))
    return tuple(rules)


def _check_sharing_dialects(policy: Policy, problems: list[str]) -> None:
    """Every class that may be asked to share devices must have a config dialect we can write."""
    scopes = [("spec.defaults", policy.defaults)] + [
        (f"spec.namespaces[{i}]", rule.rules) for i, rule in enumerate(policy.namespaces)
    ]
    for i, resource in enumerate(policy.resources):
        for where, rules in scopes:
            mode = resource.sharing or rules.sharing
            problem = sharing.unsupported(resource.device_class_name, mode)
            if problem:
                problems.append(
                    f"spec.resources[{i}].deviceClassName: {problem} (sharing {mode} from {where})"
                )
                break


# --- checking a policy where it is written -----------------------------------------------------

_PROBLEM = re.compile(r"((?:\(top level\)|[A-Za-z]\w*)(?:\.\w+|\[\d+\])*): (.+)", re.DOTALL)


@dataclass(frozen=True, slots=True)
class PolicyProblem:
    """One problem of a policy document: its field path ('' when it has none) and message."""

    field: str
    message: str

    @classmethod
    def from_text(cls, text: str) -> PolicyProblem:
        """Split the loader's `field.path: message`."""
        match = _PROBLEM.fullmatch(text)
        return cls(match[1], match[2]) if match else cls("", text)

    def to_text(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


@dataclass(frozen=True, slots=True)
class PolicyCheck:
    """What the loader says of a GPUPolicy, or of a ConfigMap holding one (`policy.yaml`)."""

    source: str
    errors: tuple[PolicyProblem, ...]
    warnings: tuple[PolicyProblem, ...]

    @classmethod
    def of(cls, document: Any, *, source: str = "policy") -> PolicyCheck:
        """Run the loader the webhook runs on `document`; every problem, none raised."""
        try:
            policy = Policy.from_mapping(document, source=source)
        except PolicyError as exc:
            problems = tuple(PolicyProblem.from_text(p) for p in exc.problems)
            return cls(exc.source, problems, ())
        warnings = tuple(PolicyProblem.from_text(w) for w in policy.warnings)
        return cls(source, (), warnings)

    def message(self) -> str:
        """The errors on one line, as the webhook logs a refused edit and as admission denies it."""
        return f"{self.source} is invalid: " + "; ".join(p.to_text() for p in self.errors)
