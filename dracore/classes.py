"""The DeviceClasses a GPUPolicy needs on the scheduler's own path for extended resources.

With KEP-5004 (alpha in Kubernetes 1.34-1.35, beta and on by default in 1.36, GA in 1.37) the
scheduler serves `nvidia.com/gpu: N` itself when a DeviceClass names that resource in
`spec.extendedResourceName`, and any class can also be asked for by its implicit name
`deviceclass.resource.kubernetes.io/<class>`. The scheduler allocates through the class alone
(no per-pod selector or config), so everything the policy can hand out becomes a class:

- per legacy resource of the policy (its exact rules, and its wildcard rules once per MIG
  profile given) one class configured with the sharing the policy's defaults give that
  resource; it claims the resource's name;
- per other sharing the namespace rules give that resource, one more class, reached only
  through its implicit name: only one class may claim a name (the scheduler takes the newest).

Selectors are separate entries, which the API ANDs: the selectors of the class the policy names
(known for the drivers' chart classes, or read from the cluster), the rule's selector as the
platform team wrote it, and for a MIG profile a comparison with the profile as an escaped
literal, so no profile name can change an expression's structure.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from dracore import cel, dra, sharing
from dracore.names import DNS_LABEL_MAX, is_dns_subdomain, is_extended_resource_name, short_hash
from dracore.policy import MPSSettings, Policy, ResourceRule, SharingRules
from dracore.translate import MANAGED_BY, MANAGED_BY_LABEL, RESOURCE_API_VERSION

CLASS_PREFIX: Final = "kubectl-dra-"
IMPLICIT_PREFIX: Final = "deviceclass.resource.kubernetes.io/"
# The domain of the legacy resources; dropped from class names (`nvidia.com/gpu` -> `gpu`).
LEGACY_DOMAIN: Final = "nvidia.com"
# Servers from which the scheduler honours extendedResourceName without a feature gate.
EXTENDED_RESOURCE_DEFAULT_ON: Final = (1, 36)
# Longest MIG profile accepted: a string attribute value holds at most 64 characters.
MAX_PROFILE_LENGTH: Final = 64
# NVIDIA GPUs offer a handful of profiles each; a bound keeps a cluster that publishes
# thousands of odd values from making thousands of classes.
MAX_PROFILES: Final = 64


def _nvidia_type(device_type: str) -> str:
    attrs = cel.attributes(sharing.NVIDIA_DRIVER)
    return cel.all_of(
        [
            f"device.driver == {cel.string_literal(sharing.NVIDIA_DRIVER)}",
            cel.has_key(attrs, "type"),
            f"{attrs}.type == {cel.string_literal(device_type)}",
        ]
    )


# What the drivers' Helm charts install under these names (the reads guarded, which the
# charts' own selectors are not).
CHART_CLASS_SELECTORS: Final[Mapping[str, tuple[str, ...]]] = {
    "gpu.nvidia.com": (_nvidia_type("gpu"),),
    "mig.nvidia.com": (_nvidia_type("mig"),),
    sharing.EXAMPLE_DRIVER: (f"device.driver == {cel.string_literal(sharing.EXAMPLE_DRIVER)}",),
}


@dataclass(frozen=True, slots=True)
class GeneratedClass:
    """One DeviceClass to install, with what it stands for."""

    name: str
    resource: str  # the legacy resource it serves, e.g. nvidia.com/mig-1g.10gb
    sharing: str  # Exclusive, TimeSlicing or MPS
    extended_resource_name: str | None  # the name it claims in spec.extendedResourceName
    manifest: dict[str, Any] = field(compare=False)

    @property
    def implicit_resource_name(self) -> str | None:
        """`deviceclass.resource.kubernetes.io/<name>`, if pods can write it (name part <= 63)."""
        return implicit_resource_name(self.name)


@dataclass(frozen=True, slots=True)
class ClassSet:
    classes: tuple[GeneratedClass, ...]
    notes: tuple[str, ...]  # what was left out, and why

    @property
    def manifests(self) -> list[dict[str, Any]]:
        return [c.manifest for c in self.classes]


def implicit_resource_name(class_name: str) -> str | None:
    """The implicit extended resource name of a class, or None if no pod could ask for it."""
    return IMPLICIT_PREFIX + class_name if len(class_name) <= DNS_LABEL_MAX else None


def is_claimable_resource_name(name: str) -> bool:
    """Whether the API server accepts `name` as a DeviceClass's extendedResourceName: an
    extended resource name outside the kubernetes.io domains (which also rules out the
    implicit `deviceclass.resource.kubernetes.io/` names)."""
    return is_extended_resource_name(name) and "kubernetes.io/" not in name


def parse_kubernetes_version(text: str) -> tuple[int, int] | None:
    """(major, minor) from `1.37`, `v1.37.2` or a provider's `1.37+`; None if unreadable."""
    match = re.match(r"^\s*v?(\d{1,3})\.(\d{1,3})(?!\d)", text)
    return (int(match[1]), int(match[2])) if match else None


def serves_extended_resource_names(version: tuple[int, int]) -> bool:
    """Whether the scheduler of this release honours extendedResourceName by default."""
    return version >= EXTENDED_RESOURCE_DEFAULT_ON


def scheduler_path_not_offered(
    version: tuple[int, int], device_classes: Iterable[Mapping[str, Any]]
) -> str | None:
    """Why a server of `version` does not offer the scheduler's path by default, or None.

    Before 1.36 the feature gate DRAExtendedResource is off unless the cluster's admin turned
    it on, and a gated-off API server drops `spec.extendedResourceName` from every DeviceClass
    it stores: a class that still has the field shows the gate is on in the API server (the
    scheduler, controller manager and kubelets need it too, which no read can tell)."""
    if serves_extended_resource_names(version):
        return None
    release = f"{version[0]}.{version[1]}"
    kept = sorted(
        str(c.get("metadata", {}).get("name"))
        for c in device_classes
        if isinstance(c.get("spec"), Mapping) and c["spec"].get("extendedResourceName")
    )
    message = (
        f"the scheduler's path (KEP-5004) is not offered: Kubernetes {release} has it only with "
        "the feature gate DRAExtendedResource, off by default before 1.36, so every legacy GPU "
        "pod needs the webhook and its ResourceClaimTemplates"
    )
    if kept:
        message += (
            f"; the API server kept extendedResourceName in DeviceClass {kept[0]}, so the gate "
            "is on there: turn it on in kube-scheduler, kube-controller-manager and every "
            "kubelet as well before relying on the path"
        )
    return message


def generate_classes(
    policy: Policy,
    *,
    mig_profiles: Iterable[str] = (),
    extended_resource_names: bool = True,
    class_selectors: Mapping[str, Sequence[str]] | None = None,
) -> ClassSet:
    """The DeviceClasses for `policy`, in policy order.

    `mig_profiles` expand the wildcard rules (`nvidia.com/mig-*`) into one resource each;
    `extended_resource_names` False leaves `spec.extendedResourceName` out (servers before
    1.36); `class_selectors` are the selectors of DeviceClasses read from the cluster, used only
    for the classes the policy names that are not the drivers' chart classes.
    """
    # The chart classes as we know them win: a class read from a cluster may be a chart's
    # older, unguarded copy, and the output must not depend on where it was made.
    known = {**(class_selectors or {}), **CHART_CLASS_SELECTORS}
    profiles, notes = _profiles(mig_profiles)
    classes: dict[str, GeneratedClass] = {}
    scopes = [policy.defaults, *(rule.rules for rule in policy.namespaces)]
    for rule in policy.resources:
        base_selectors = known.get(rule.device_class_name)
        if base_selectors is None:
            notes.append(
                f"{rule.name}: DeviceClass {rule.device_class_name} is not a driver chart's class "
                "and was not read from the cluster, so its selectors are unknown; run with "
                "--cluster where it exists, or write its class by hand"
            )
            continue
        if not rule.is_wildcard:
            _add_resource(classes, rule, rule.name, "", base_selectors, scopes)
            continue
        if not profiles:
            notes.append(
                f"{rule.name}: no MIG profiles given, so no class per profile; pass "
                "--mig-profile, or --cluster to use the profiles the cluster publishes"
            )
        for profile in profiles:
            resource = rule.name[:-1] + profile
            found = policy.resource_rule(resource)
            if found is not None and found[0] is rule:  # else an exact rule (or earlier one) wins
                _add_resource(classes, rule, resource, profile, base_selectors, scopes)
    generated = [
        c if extended_resource_names else _without_claimed_name(c) for c in classes.values()
    ]
    return ClassSet(tuple(generated), tuple(notes))


def published_mig_profiles(slices: Iterable[Mapping[str, Any]]) -> list[str]:
    """The MIG profiles the NVIDIA driver publishes (`profile` of its `type: mig` devices)."""
    found: set[str] = set()
    for published in dra.newest_generation_devices(slices):
        if published.driver != sharing.NVIDIA_DRIVER:
            continue
        attributes = published.device.get("attributes")
        if not isinstance(attributes, Mapping):
            continue

        def read(key: str, attributes: Mapping[str, Any] = attributes) -> Any:
            # Published bare (the driver's domain) or qualified with it.
            value = attributes.get(key) or attributes.get(f"{sharing.NVIDIA_DRIVER}/{key}")
            return value.get("string") if isinstance(value, Mapping) else None

        profile = read("profile")
        if read("type") == "mig" and isinstance(profile, str):
            found.add(profile)
    return sorted(found)


def _profiles(values: Iterable[str]) -> tuple[list[str], list[str]]:
    """Distinct usable profiles, in order; notes on the ones left out."""
    profiles: list[str] = []
    notes: list[str] = []
    for value in values:
        if not value or len(value) > MAX_PROFILE_LENGTH or not value.isprintable():
            notes.append(
                f"MIG profile {json.dumps(value)[:80]}: not a profile name (1 to "
                f"{MAX_PROFILE_LENGTH} printable characters, as the driver publishes them)"
            )
        elif value not in profiles and len(profiles) < MAX_PROFILES:
            profiles.append(value)
        elif value not in profiles:
            notes.append(
                f"more than {MAX_PROFILES} MIG profiles: {json.dumps(value)[:80]} and later ones left out"
            )
            break
    return profiles, notes


def _add_resource(
    classes: dict[str, GeneratedClass],
    rule: ResourceRule,
    resource: str,
    profile: str,
    base_selectors: Sequence[str],
    scopes: Sequence[SharingRules],
) -> None:
    """The classes one legacy resource needs: the default scope's first, claiming the name."""
    dialect = sharing.dialect_for(rule.device_class_name)
    selectors = [*base_selectors]
    if profile:
        attrs = cel.attributes(sharing.NVIDIA_DRIVER)
        selectors.append(
            cel.all_of(
                [cel.has_key(attrs, "profile"), f"{attrs}.profile == {cel.string_literal(profile)}"]
            )
        )
    if rule.selector:
        selectors.append(rule.selector)
    base = _base_name(resource)
    for index, rules in enumerate(scopes):
        mode = rule.sharing or rules.sharing
        parameters = rules.sharing_parameters(dialect, mode)
        wanted = CLASS_PREFIX + base + _sharing_suffix(mode, parameters)
        name = class_name(wanted)
        if name in classes and classes[name].resource != resource:
            name = class_name(wanted, force_hash=True)  # two resources that read alike
        if name in classes:
            continue  # another scope with the same sharing: one class serves both
        claimed = resource if index == 0 and is_claimable_resource_name(resource) else None
        classes[name] = GeneratedClass(
            name,
            resource,
            mode,
            claimed,
            _manifest(name, selectors, dialect, parameters, claimed),
        )


def _manifest(
    name: str,
    selectors: Sequence[str],
    dialect: sharing.Dialect | None,
    parameters: dict[str, Any] | None,
    claimed: str | None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"selectors": [{"cel": {"expression": e}} for e in selectors]}
    if parameters is not None and dialect is not None:
        spec["config"] = [{"opaque": {"driver": dialect.driver, "parameters": parameters}}]
    if claimed:
        spec["extendedResourceName"] = claimed
    return {
        "apiVersion": RESOURCE_API_VERSION,
        "kind": "DeviceClass",
        "metadata": {"name": name, "labels": {MANAGED_BY_LABEL: MANAGED_BY}},
        "spec": spec,
    }


def _without_claimed_name(generated: GeneratedClass) -> GeneratedClass:
    manifest = json.loads(json.dumps(generated.manifest))
    manifest["spec"].pop("extendedResourceName", None)
    return GeneratedClass(generated.name, generated.resource, generated.sharing, None, manifest)


def _sharing_suffix(mode: str, parameters: Mapping[str, Any] | None) -> str:
    """`-timeslicing[-<interval>]` or `-mps[-<hash of settings>]`; nothing for Exclusive."""
    if mode == "Exclusive" or parameters is None:
        return ""
    settings = parameters.get("sharing") or {}
    if mode == "TimeSlicing":
        interval = (settings.get("timeSlicingConfig") or {}).get("interval", "Default")
        return "-timeslicing" + ("" if interval == "Default" else f"-{interval.lower()}")
    defaults = MPSSettings()
    usual = {"defaultActiveThreadPercentage": defaults.default_active_thread_percentage}
    mps = settings.get("mpsConfig") or {}
    return "-mps" + ("" if mps == usual else f"-{short_hash(_canonical(mps), 6)}")


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _base_name(resource: str) -> str:
    domain, _, name = resource.partition("/")
    return name if domain == LEGACY_DOMAIN else f"{domain}-{name}"


def class_name(wanted: str, *, force_hash: bool = False) -> str:
    """`wanted` as a DNS subdomain of at most 63 characters (so its implicit name is usable).

    A name that had to change (upper case, other characters, length) ends in a hash of what
    was wanted, so two resources that read alike never share a class.
    """
    labels = [label.strip("-") for label in re.sub(r"[^a-z0-9.]", "-", wanted.lower()).split(".")]
    name = ".".join(label for label in labels if label)
    if force_hash or name != wanted or len(name) > DNS_LABEL_MAX or not is_dns_subdomain(name):
        name = f"{name[: DNS_LABEL_MAX - 11].rstrip('-.')}-{short_hash(wanted)}"
    return name
