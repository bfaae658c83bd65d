"""dracore.admission_policies: the compiled route agrees with the webhook's rewrite.

The route's Python twin (`InProcessRoute.handles/apply/denial`) is what the e2e tests compare
with the real API server running the compiled CEL; here it is compared with `translate` over
generated policies and pods: every pod the route renames, the webhook rewrites to the same
devices (the class's config is the claim's, the counts are the requests'), and nothing else in
the pod differs.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from dracore import cel
from dracore.admission_policies import (
    INDEXED_CONTAINERS,
    InProcessRoute,
    asks_for_legacy_resources,
    compile_route,
    serves_admission_policies,
    webhook_match_conditions,
)
from dracore.classes import IMPLICIT_PREFIX, generate_classes
from dracore.errors import TranslationError
from dracore.policy import Policy
from dracore.record import RewrittenRecord
from dracore.translate import REWRITTEN_ANNOTATION, translate

MIG = "1g.10gb"
RESOURCES = ["nvidia.com/gpu", "nvidia.com/gpu.shared", f"nvidia.com/mig-{MIG}"]
NAMESPACES = ["ml", "team-a", "team-b", "kube-system", "kubectl-dra"]


def make_policy(**spec: Any) -> Policy:
    return Policy.from_mapping(
        {"apiVersion": "kubectl-dra.io/v1alpha1", "kind": "GPUPolicy", "spec": spec}
    )


def compiled(policy: Policy) -> InProcessRoute:
    return compile_route(policy, generate_classes(policy, mig_profiles=[MIG]))


def pod(*containers: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p"}, "spec": {"containers": list(containers), **spec}}


def gpu_container(name: str = "main", count: str = "2", resource: str = "nvidia.com/gpu") -> Any:
    return {"name": name, "resources": {"limits": {resource: count}, "requests": {resource: count}}}


# --- generated policies and pods ---------------------------------------------------------------

RULE_KEYS = {
    "sharing": st.sampled_from(["Exclusive", "TimeSlicing", "MPS"]),
    "maxGPUsPerPod": st.sampled_from([0, 2, 8, 16, 16, 16]),
    "podSharing": st.sampled_from(["Disabled", "Allowed", "Always"]),
    "nodeSelectors": st.sampled_from(["Translate", "Keep", "Ignore"]),
    "timeSlicing": st.sampled_from([{"interval": "Default"}, {"interval": "Long"}]),
}


@st.composite
def rules(draw: Any) -> dict[str, Any]:
    keys = draw(st.sets(st.sampled_from(sorted(RULE_KEYS))))
    return {k: draw(RULE_KEYS[k]) for k in keys}


@st.composite
def policies(draw: Any) -> Policy:
    namespaces = []
    for _ in range(draw(st.integers(0, 3))):
        rule = draw(rules())
        names = draw(st.lists(st.sampled_from(NAMESPACES[:3]), max_size=2, unique=True))
        labels = draw(st.sampled_from([{}, {"gpu": "ts"}, {"gpu": "mps"}]))
        if names or labels:
            namespaces.append({**rule, **({"names": names} if names else {}), "labels": labels})
    return make_policy(defaults=draw(rules()), namespaces=namespaces)


# Mostly counts the route takes, so that both sides of every rule are exercised.
COUNTS = st.sampled_from(["1"] * 8 + ["2"] * 4 + ["3", "5", "0", "1.5", "01"])


@st.composite
def pods(draw: Any) -> dict[str, Any]:
    containers = []
    for i in range(draw(st.sampled_from([1, 1, 2, 3]))):
        limits = draw(
            st.dictionaries(st.sampled_from(RESOURCES), COUNTS, min_size=int(i == 0), max_size=2)
        )
        container: dict[str, Any] = {"name": f"c{i}", "image": "x"}
        if limits:
            requests = dict(limits) if draw(st.integers(0, 3)) else {}
            if requests and draw(st.integers(0, 9)) == 0:
                requests[next(iter(requests))] = "4"
            container["resources"] = {
                "limits": limits,
                **({"requests": requests} if requests else {}),
            }
        containers.append(container)
    spec: dict[str, Any] = {}
    if draw(st.integers(0, 9)) == 0:
        spec["initContainers"] = [{"name": "init", "resources": {"limits": {RESOURCES[0]: "1"}}}]
    if draw(st.integers(0, 9)) == 0:
        spec["nodeSelector"] = {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    if draw(st.booleans()):
        spec["tolerations"] = draw(
            st.sampled_from(
                [[], [{"operator": "Exists"}], [{"key": "nvidia.com/gpu", "operator": "Exists"}]]
            )
        )
    annotations = draw(
        st.sampled_from(
            [
                {},
                {},
                {},
                {},
                {"kubectl-dra.io/pod-sharing": "true"},
                {"kubectl-dra.io/pod-sharing": "false"},
                {"kubectl-dra.io/skip": "true"},
                {"kubectl-dra.io/shared-claim": "team"},
            ]
        )
    )
    result = pod(*containers, **spec)
    if annotations:
        result["metadata"]["annotations"] = annotations
    return result


def without_gpu_fields(pod: dict[str, Any], names: set[str]) -> dict[str, Any]:
    """The pod minus what the two routes write differently: claims, GPU resource keys, record."""
    pod = copy.deepcopy(pod)
    spec = pod["spec"]
    spec.pop("resourceClaims", None)
    for container in spec["containers"]:
        resources = container.get("resources") or {}
        resources.pop("claims", None)
        for section in ("limits", "requests"):
            values = resources.get(section)
            if values is not None:
                for key in [k for k in values if k in names]:
                    del values[key]
                if not values:
                    del resources[section]
        if "resources" in container and not resources:
            del container["resources"]
    annotations = pod["metadata"].get("annotations") or {}
    annotations.pop(REWRITTEN_ANNOTATION, None)
    if "annotations" in pod["metadata"] and not annotations:
        del pod["metadata"]["annotations"]
    return pod


def claim_configs(template: dict[str, Any]) -> dict[str, Any]:
    """request name -> the opaque parameters the claim gives it (None: exclusive)."""
    devices = template["spec"]["spec"]["devices"]
    found: dict[str, Any] = {r["name"]: None for r in devices["requests"]}
    for config in devices.get("config") or []:
        for name in config["requests"]:
            found[name] = config["opaque"]["parameters"]
    return found


@st.composite
def simple_pods(draw: Any) -> dict[str, Any]:
    """Pods of the shape the route takes: whole counts in app containers, nothing else."""
    containers = []
    for i in range(draw(st.integers(1, 3))):
        limits = draw(
            st.dictionaries(
                st.sampled_from(RESOURCES), st.sampled_from(["1", "2", "3"]), min_size=1, max_size=2
            )
        )
        containers.append({"name": f"c{i}", "image": "x", "resources": {"limits": limits}})
    return pod(*containers)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policy=policies(), pod=pods(), namespace=st.sampled_from(NAMESPACES), labeled=st.booleans())
def test_every_pod_the_route_renames_the_webhook_rewrites_to_the_same_devices(
    policy: Policy, pod: dict[str, Any], namespace: str, labeled: bool
) -> None:
    check_agreement(policy, pod, namespace, {"gpu": "ts"} if labeled else {})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    policy=policies(),
    pod=simple_pods(),
    namespace=st.sampled_from(NAMESPACES[:3]),
    labeled=st.booleans(),
)
def test_simple_pods_agree_with_the_webhook_under_any_policy(
    policy: Policy, pod: dict[str, Any], namespace: str, labeled: bool
) -> None:
    check_agreement(policy, pod, namespace, {"gpu": "ts"} if labeled else {})


def check_agreement(
    policy: Policy, pod: dict[str, Any], namespace: str, labels: dict[str, str]
) -> None:
    classes = generate_classes(policy, mig_profiles=[MIG])
    route = compile_route(policy, classes)
    renamed = route.apply(pod, namespace=namespace, labels=labels)
    assert (renamed is None) == (not route.handles(pod, namespace=namespace, labels=labels))
    event("renamed" if renamed is not None else "left to the webhook")
    if renamed is None:
        return
    webhook = translate(pod, policy=policy, namespace=namespace, namespace_labels=labels)
    assert webhook.changed
    scope = route.scope_for(namespace, labels)
    assert scope is not None and scope.rules == policy.rules_for(namespace, labels)
    implicit = dict(scope.renames)
    # Nothing but the GPU fields differs (tolerations included).
    gpu_keys = set(RESOURCES) | set(implicit.values())
    assert without_gpu_fields(renamed, gpu_keys) == without_gpu_fields(webhook.pod, gpu_keys)
    # The same demands, recorded in the same schema.
    ours = RewrittenRecord.from_annotation(renamed["metadata"]["annotations"][REWRITTEN_ANNOTATION])
    theirs = RewrittenRecord.from_annotation(
        webhook.pod["metadata"]["annotations"][REWRITTEN_ANNOTATION]
    )
    assert [(c.container, c.resource, c.count) for c in ours.containers] == [
        (c.container, c.resource, c.count) for c in theirs.containers
    ]
    assert (ours.policy, ours.sharing, ours.claim) == (theirs.policy, theirs.sharing, None)
    # Each renamed count names the class whose config the webhook's claim gives that request.
    by_implicit = {c.implicit_resource_name: c for c in classes.classes}
    (template,) = webhook.templates
    configs = claim_configs(template)
    requests = {r["name"]: r["exactly"] for r in template["spec"]["spec"]["devices"]["requests"]}
    for index, container in enumerate(renamed["spec"]["containers"]):
        for key, value in ((container.get("resources") or {}).get("limits") or {}).items():
            if not key.startswith(IMPLICIT_PREFIX):
                continue
            generated = by_implicit[key]
            (entry,) = [
                c
                for c in theirs.containers
                if c.container == f"c{index}" and c.resource == generated.resource
            ]
            assert entry.count == int(value) and entry.requests
            for name in entry.requests:
                assert (
                    requests[name]["deviceClassName"]
                    == policy.resource_rule(generated.resource)[0].device_class_name
                )  # type: ignore[index]
                class_config = (
                    (generated.manifest["spec"].get("config") or [{}])[0]
                    .get("opaque", {})
                    .get("parameters")
                )
                assert configs[name] == class_config
                selectors = {
                    s["cel"]["expression"] for s in generated.manifest["spec"]["selectors"]
                }
                assert {
                    s["cel"]["expression"] for s in requests[name].get("selectors", [])
                } <= selectors | {
                    e
                    for s in requests[name].get("selectors", [])
                    for e in [s["cel"]["expression"]]
                    if "profile" in e
                }


@settings(max_examples=200, deadline=None)
@given(
    policy=policies(),
    namespace=st.sampled_from(NAMESPACES),
    labels=st.sampled_from([{}, {"gpu": "ts"}, {"gpu": "mps"}, {"kubectl-dra.io/ignore": ""}]),
)
def test_exactly_one_scope_applies_and_it_is_the_policys_rule(
    policy: Policy, namespace: str, labels: dict[str, str]
) -> None:
    route = compiled(policy)
    scope = route.scope_for(namespace, labels)
    if (
        namespace in policy.exempt_namespaces
        or namespace == "kubectl-dra"
        or labels.get("kubectl-dra.io/ignore") is not None
    ):
        assert scope is None
        return
    assert scope is not None and scope.rules == policy.rules_for(namespace, labels)


# --- the manifests -----------------------------------------------------------------------------


def test_one_mutating_and_one_validating_policy_per_rule_with_their_bindings() -> None:
    policy = make_policy(
        namespaces=[{"names": ["ml"], "labels": {"gpu": "ts"}, "sharing": "TimeSlicing"}]
    )
    kinds = [(m["kind"], m["metadata"]["name"]) for m in compiled(policy).manifests]
    assert kinds == [
        ("MutatingAdmissionPolicy", "kubectl-dra-rename-namespaces-0"),
        ("ValidatingAdmissionPolicy", "kubectl-dra-limits-namespaces-0"),
        ("MutatingAdmissionPolicyBinding", "kubectl-dra-rename-namespaces-0-names"),
        ("ValidatingAdmissionPolicyBinding", "kubectl-dra-limits-namespaces-0-names"),
        ("MutatingAdmissionPolicyBinding", "kubectl-dra-rename-namespaces-0-labels"),
        ("ValidatingAdmissionPolicyBinding", "kubectl-dra-limits-namespaces-0-labels"),
        ("MutatingAdmissionPolicy", "kubectl-dra-rename-defaults"),
        ("ValidatingAdmissionPolicy", "kubectl-dra-limits-defaults"),
        ("MutatingAdmissionPolicyBinding", "kubectl-dra-rename-defaults"),
        ("ValidatingAdmissionPolicyBinding", "kubectl-dra-limits-defaults"),
    ]


def test_bindings_split_namespaces_between_rules_and_leave_out_exempt_and_ignored() -> None:
    policy = make_policy(
        namespaces=[{"names": ["ml", "kube-system"], "labels": {"gpu": "ts"}, "sharing": "MPS"}],
        exemptNamespaces=["kube-system"],
    )
    selectors = {
        m["metadata"]["name"]: m["spec"]["matchResources"]["namespaceSelector"]
        for m in compiled(policy).manifests
        if m["kind"] == "MutatingAdmissionPolicyBinding"
    }
    ignore = {"key": "kubectl-dra.io/ignore", "operator": "DoesNotExist"}
    name = "kubernetes.io/metadata.name"
    assert selectors == {
        "kubectl-dra-rename-namespaces-0-names": {
            "matchExpressions": [{"key": name, "operator": "In", "values": ["ml"]}, ignore]
        },
        "kubectl-dra-rename-namespaces-0-labels": {
            "matchLabels": {"gpu": "ts"},
            "matchExpressions": [
                {"key": name, "operator": "NotIn", "values": ["kube-system", "kubectl-dra", "ml"]},
                ignore,
            ],
        },
        "kubectl-dra-rename-defaults": {
            "matchExpressions": [
                {"key": name, "operator": "NotIn", "values": ["kube-system", "kubectl-dra", "ml"]},
                ignore,
            ]
        },
    }


@pytest.mark.parametrize("mode", ["Audit", "Disabled"])
def test_nothing_is_compiled_unless_the_policy_enforces(mode: str) -> None:
    route = compiled(make_policy(mode=mode))
    assert route.manifests == []
    assert route.notes and mode in route.notes[0]
    assert not route.handles(pod(gpu_container()), namespace="ml")


def all_expressions(manifests: list[dict[str, Any]]) -> list[str]:
    found = []
    for manifest in manifests:
        spec = manifest["spec"]
        found += [c["expression"] for c in spec.get("matchConditions", [])]
        found += [v["expression"] for v in spec.get("variables", [])]
        found += [m["jsonPatch"]["expression"] for m in spec.get("mutations", [])]
        for v in spec.get("validations", []):
            found += [v["expression"], v["messageExpression"]]
    return found


def test_policy_strings_enter_cel_only_as_escaped_literals() -> None:
    """A label value (not checked as a label by the policy parser) that would end a string."""
    hostile = '" || true || "'
    policy = make_policy(namespaces=[{"labels": {"gpu": hostile}, "sharing": "TimeSlicing"}])
    expressions = all_expressions(compiled(policy).manifests)
    carrying = [e for e in expressions if "|| true ||" in e]
    assert carrying, "the label is used in the defaults' precedence"
    for expression in carrying:
        assert cel.string_literal(hostile) in expression
        assert expression.replace(cel.string_literal(hostile), '"x"').count("|| true ||") == 0


def test_every_compiled_expression_parses() -> None:
    policy = make_policy(
        namespaces=[
            {"names": ["ml"], "sharing": "TimeSlicing", "podSharing": "Always"},
            {"labels": {"gpu": "mps"}, "sharing": "MPS", "maxGPUsPerPod": 2},
        ]
    )
    expressions = all_expressions(compiled(policy).manifests)
    assert len(expressions) > 20
    assert [cel.check_expression(e) for e in expressions] == [None] * len(expressions)


# --- decisions ---------------------------------------------------------------------------------

ROUTE = compiled(
    make_policy(
        defaults={
            "maxGPUsPerPod": 4,
            "podSharing": "Allowed",
            "sharedClaims": "Allowed",
            "allowSkip": True,
        },
        namespaces=[{"names": ["team-a"], "sharing": "TimeSlicing", "podSharing": "Always"}],
    )
)


@pytest.mark.parametrize(
    ("case", "subject", "namespace"),
    [
        ("app containers only", pod(gpu_container()), "ml"),
        ("two GPU containers", pod(gpu_container(), gpu_container("side", "1")), "ml"),
        ("MIG profile with a class", pod(gpu_container(resource=f"nvidia.com/mig-{MIG}")), "ml"),
        (
            "limit only (no defaulting yet)",
            pod({"name": "main", "resources": {"limits": {"nvidia.com/gpu": "2"}}}),
            "ml",
        ),
    ],
)
def test_simple_pods_are_renamed(case: str, subject: dict[str, Any], namespace: str) -> None:
    assert ROUTE.handles(subject, namespace=namespace), case


@pytest.mark.parametrize(
    ("case", "subject", "namespace"),
    [
        (
            "init container GPU",
            pod(gpu_container(), initContainers=[gpu_container("init", "1")]),
            "ml",
        ),
        (
            "sidecar GPU",
            pod(
                gpu_container(),
                initContainers=[{**gpu_container("side", "1"), "restartPolicy": "Always"}],
            ),
            "ml",
        ),
        (
            "pod-sharing annotation",
            {
                **pod(gpu_container()),
                "metadata": {"annotations": {"kubectl-dra.io/pod-sharing": "true"}},
            },
            "ml",
        ),
        (
            "shared claim",
            {
                **pod(gpu_container()),
                "metadata": {"annotations": {"kubectl-dra.io/shared-claim": "c"}},
            },
            "ml",
        ),
        (
            "skip",
            {**pod(gpu_container()), "metadata": {"annotations": {"kubectl-dra.io/skip": "true"}}},
            "ml",
        ),
        (
            "GFD node label",
            pod(gpu_container(), nodeSelector={"nvidia.com/gpu.family": "hopper"}),
            "ml",
        ),
        (
            "GFD affinity",
            pod(
                gpu_container(),
                affinity={
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [
                                {
                                    "matchExpressions": [
                                        {
                                            "key": "nvidia.com/gpu.product",
                                            "operator": "In",
                                            "values": ["x"],
                                        }
                                    ]
                                }
                            ]
                        }
                    }
                },
            ),
            "ml",
        ),
        ("over maxGPUsPerPod", pod(gpu_container(count="3"), gpu_container("b", "2")), "ml"),
        ("zero", pod(gpu_container(count="0")), "ml"),
        ("not a whole number", pod(gpu_container(count="1500m")), "ml"),
        (
            "request differs",
            pod(
                {
                    "name": "m",
                    "resources": {
                        "limits": {"nvidia.com/gpu": "2"},
                        "requests": {"nvidia.com/gpu": "1"},
                    },
                }
            ),
            "ml",
        ),
        (
            "request only",
            pod({"name": "m", "resources": {"requests": {"nvidia.com/gpu": "2"}}}),
            "ml",
        ),
        (
            "MIG profile without a class",
            pod(gpu_container(resource="nvidia.com/mig-7g.80gb")),
            "ml",
        ),
        ("container name not a label", pod(gpu_container("Main")), "ml"),
        (
            "more containers than indexed",
            pod(gpu_container(), *({"name": f"c{i}"} for i in range(INDEXED_CONTAINERS))),
            "ml",
        ),
        (
            "pods share where podSharing is Always",
            pod(gpu_container(), gpu_container("side", "1")),
            "team-a",
        ),
        ("exempt namespace", pod(gpu_container()), "kube-system"),
        ("the webhook's namespace", pod(gpu_container()), "kubectl-dra"),
        ("no GPU", pod({"name": "main"}), "ml"),
    ],
)
def test_everything_else_is_left_to_the_webhook(
    case: str, subject: dict[str, Any], namespace: str
) -> None:
    assert not ROUTE.handles(subject, namespace=namespace), case
    assert ROUTE.apply(subject, namespace=namespace) is None


def test_renamed_pod_names_the_class_of_its_namespace_and_records_the_request() -> None:
    renamed = ROUTE.apply(pod(gpu_container()), namespace="team-a")
    assert renamed is not None
    implicit = IMPLICIT_PREFIX + "kubectl-dra-gpu-timeslicing"
    assert renamed["spec"]["containers"][0]["resources"] == {
        "limits": {implicit: "2"},
        "requests": {implicit: "2"},
    }
    assert renamed["spec"]["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    record = json.loads(renamed["metadata"]["annotations"][REWRITTEN_ANNOTATION])
    assert record == {
        "containers": [
            {
                "class": "kubectl-dra-gpu-timeslicing",
                "container": "main",
                "count": 2,
                "resource": "nvidia.com/gpu",
            }
        ],
        "path": "scheduler",
        "policy": ROUTE.policy.digest,
        "route": "admission-policy",
        "sharing": "TimeSlicing",
        "version": 2,
    }


def test_a_pod_naming_a_class_over_the_limit_is_denied_as_the_webhook_denies_legacy() -> None:
    legacy = pod(gpu_container(count="3"), gpu_container("b", "2"))
    by_name = copy.deepcopy(legacy)
    for container in by_name["spec"]["containers"]:
        container["resources"] = {
            "limits": {
                IMPLICIT_PREFIX + "gpu.nvidia.com": container["resources"]["limits"][
                    "nvidia.com/gpu"
                ]
            }
        }
    with pytest.raises(TranslationError) as webhook:
        translate(legacy, policy=ROUTE.policy, namespace="ml")
    assert ROUTE.denial(by_name, namespace="ml") == str(webhook.value)
    assert "needs 5 GPU devices in all; policy maxGPUsPerPod is 4" in str(webhook.value)
    # The largest single request is named when it alone is over, as the webhook does.
    by_name["spec"]["containers"][0]["resources"]["limits"] = {
        IMPLICIT_PREFIX + "kubectl-dra-gpu": "9"
    }
    assert "needs 9 GPU devices" in (ROUTE.denial(by_name, namespace="ml") or "")
    assert ROUTE.denial(pod(gpu_container()), namespace="ml") is None  # legacy: the webhook's


def test_the_webhooks_complement_is_the_legacy_condition_it_already_has() -> None:
    (condition,) = webhook_match_conditions(ROUTE.policy)
    assert condition["expression"] == asks_for_legacy_resources(ROUTE.policy)
    assert "nvidia.com/mig-" in condition["expression"]


@pytest.mark.parametrize(
    ("version", "served"), [((1, 35), False), ((1, 36), True), ((1, 37), True), ((2, 0), True)]
)
def test_admission_policies_are_served_from_1_36(version: tuple[int, int], served: bool) -> None:
    assert serves_admission_policies(version) is served
