"""GPUPolicy + ClassSet -> InProcessRoute: the scopes, the renames, the limits per namespace."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dracore import sharing
from dracore.admission_policies.guard import PolicySource
from dracore.admission_policies.manifests import manifests
from dracore.admission_policies.route import (
    WEBHOOK_NAMESPACE,
    InProcessRoute,
    Limits,
    Scope,
)
from dracore.classes import ClassSet, GeneratedClass, generate_classes, implicit_resource_name
from dracore.policy import MAX_DEVICES_PER_CLAIM, Policy, SharingRules


@dataclass(frozen=True, slots=True)
class Install:
    """The classes and the admission policies one installs together."""

    classes: ClassSet
    route: InProcessRoute

    @property
    def notes(self) -> tuple[str, ...]:
        return (*self.classes.notes, *self.route.notes)

    @property
    def manifests(self) -> list[dict[str, Any]]:
        """Classes first (the policies name them); nothing when no policy is compiled."""
        if not self.route.manifests:
            return []
        return [*self.classes.manifests, *self.route.manifests]


def compile_install(
    policy: Policy,
    *,
    mig_profiles: Sequence[str] = (),
    claim_resource_names: bool = False,
    webhook_namespace: str = WEBHOOK_NAMESPACE,
    guard: PolicySource | None = None,
) -> Install:
    """The classes and the admission policies for `policy`.

    `claim_resource_names` False (the default) leaves `spec.extendedResourceName` out of the
    classes: the policies rename to implicit names, and a driver's own class may already claim
    the legacy name (the newest claimant wins)."""
    classes = generate_classes(
        policy, mig_profiles=mig_profiles, extended_resource_names=claim_resource_names
    )
    route = compile_route(policy, classes, webhook_namespace=webhook_namespace, guard=guard)
    return Install(classes, route)


def compile_route(
    policy: Policy,
    classes: ClassSet,
    *,
    webhook_namespace: str = WEBHOOK_NAMESPACE,
    guard: PolicySource | None = None,
) -> InProcessRoute:
    """The admission policies for `policy`, given the DeviceClasses generated for it; with
    `guard`, they act only while its ConfigMap holds the text `policy` was read from."""
    notes: list[str] = []
    if policy.mode != "Enforce":
        notes.append(
            f"policy mode is {policy.mode}: nothing is renamed in the API server; the webhook "
            "handles every pod (Audit warns what Enforce would do)"
        )
    rule_scopes = [(f"namespaces-{i}", rule) for i, rule in enumerate(policy.namespaces)]
    all_rules = [policy.defaults, *(rule.rules for _, rule in rule_scopes)]
    mappings = [_renames(policy, classes, rules) for rules in all_rules]
    names = sorted(set.intersection(*(set(m) for m in mappings)))
    for resource in sorted(set.union(*(set(m) for m in mappings)) - set(names)):
        notes.append(
            f"{resource}: no generated class for every namespace rule; left to the webhook"
        )
    excluded = tuple(sorted({*policy.exempt_namespaces, webhook_namespace}))

    scopes: list[Scope] = []
    named: set[str] = set()
    label_rules: list[tuple[tuple[str, str], ...]] = []
    for (key, rule), mapping in zip(rule_scopes, mappings[1:], strict=True):
        own = tuple(sorted(rule.names - named - set(excluded)))
        scopes.append(
            Scope(
                key,
                rule.rules,
                own,
                rule.labels,
                tuple(sorted(named | rule.names)),
                tuple(label_rules),
                tuple((n, mapping[n]) for n in names),
            )
        )
        named |= rule.names
        if rule.labels:
            label_rules.append(rule.labels)
    scopes.append(
        Scope(
            "defaults",
            policy.defaults,
            (),
            (),
            tuple(sorted(named)),
            tuple(label_rules),
            tuple((n, mappings[0][n]) for n in names),
        )
    )
    by_name, elsewhere = strictest_limits(policy)
    guarded = sorted(
        {name for c in classes.classes if (name := c.implicit_resource_name) is not None}
        | {
            name
            for r in policy.resources
            if (name := implicit_resource_name(r.device_class_name)) is not None
        }
    )
    route = InProcessRoute(
        policy=policy,
        scopes=tuple(scopes),
        names=tuple(names),
        guarded=tuple(guarded),
        limits_by_name=by_name,
        limits_elsewhere=elsewhere,
        excluded=excluded,
        notes=tuple(notes),
        manifests=[],
    )
    if policy.mode == "Enforce":
        route.manifests.extend(manifests(route, guard))
    return route


def _renames(policy: Policy, classes: ClassSet, rules: SharingRules) -> dict[str, str]:
    """legacy resource -> implicit name of the one class configured as `rules` share it."""
    found: dict[str, list[str]] = {}
    for generated in classes.classes:
        implicit = generated.implicit_resource_name
        match = policy.resource_rule(generated.resource)
        if implicit is None or match is None:
            continue
        rule = match[0]
        if _config(generated) == _wanted_config(rule.device_class_name, rule.sharing, rules):
            found.setdefault(generated.resource, []).append(implicit)
    # Two classes that fit (a resource listed exactly and through a prefix) is left to the
    # webhook, which knows which rule wins.
    return {resource: names[0] for resource, names in found.items() if len(names) == 1}


def _config(generated: GeneratedClass) -> Any:
    configs = generated.manifest["spec"].get("config") or []
    return configs[0]["opaque"]["parameters"] if configs else None


def _wanted_config(device_class: str, rule_sharing: str | None, rules: SharingRules) -> Any:
    return rules.sharing_parameters(
        sharing.dialect_for(device_class), rule_sharing or rules.sharing
    )


def strictest_limits(
    policy: Policy,
) -> tuple[tuple[tuple[tuple[str, ...], Limits], ...], Limits]:
    """Per group of namespace names, the strictest rules that may apply there.

    The mutating policies could read the namespace's labels, but the webhook's registration
    cannot; the route decides on the namespace's name alone so the two always agree.
    """

    def strictest(candidates: Sequence[SharingRules]) -> Limits:
        return Limits(
            min(min(r.max_gpus_per_pod for r in candidates), MAX_DEVICES_PER_CLAIM),
            any(r.pod_sharing == "Always" for r in candidates),
            any(r.node_selectors != "Ignore" for r in candidates),
        )

    groups: list[tuple[tuple[str, ...], Limits]] = []
    named: set[str] = set()
    label_rules: list[SharingRules] = []
    for rule in policy.namespaces:
        own = tuple(sorted(rule.names - named))
        if own:
            groups.append((own, strictest([*label_rules, rule.rules])))
        named |= rule.names
        if rule.labels:
            label_rules.append(rule.rules)
    return tuple(groups), strictest([*label_rules, policy.defaults])
