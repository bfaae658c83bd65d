"""dracore.paths: which pods the scheduler serves (KEP-5004), the rename, and the webhook's use.

The decision is a table of cases, each fallback with its reason; a property test checks that
every pod sent to the scheduler gets, per container, the devices the template path's claim
would give it (same count, same driver class, the class's config is the claim's); the webhook
tests check the patch, that nothing is created, the warning under `path: Scheduler`, and that
a re-applied legacy manifest is taken back on UPDATE.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonpatch
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from dracore import admission_review as review
from dracore.classes import IMPLICIT_PREFIX, generate_classes
from dracore.errors import TranslationError
from dracore.paths import NOTHING, ClusterOffer, PathChoice, choose_path, rename_for_scheduler
from dracore.planning import parse_count
from dracore.policy import Policy
from dracore.record import RewrittenRecord
from dracore.translate import (
    POD_SHARING_ANNOTATION,
    REWRITTEN_ANNOTATION,
    SHARED_CLAIM_ANNOTATION,
    translate,
)
from tests.builders import container, make_pod, make_policy, make_review
from tests.unit.test_admission_policies import (
    MIG,
    NAMESPACES,
    claim_configs,
    pods,
    policies,
    without_gpu_fields,
)
from webhook.admission.decision import Admission
from webhook.admission.gateway import MemoryGateway
from webhook.admission.handler import Reviewer
from webhook.deadline import Deadline

AUTO = Policy.default()
SCHEDULER = make_policy(path="Scheduler")
TIMESLICED = make_policy(namespaces=[{"names": ["ts"], "sharing": "TimeSlicing"}])


def offer_for(
    policy: Policy, *, version: str = "v1.37.2", without: tuple[str, ...] = ()
) -> ClusterOffer:
    """The cluster after `kubectl dra classes --mig-profile 1g.10gb | kubectl apply -f -`."""
    manifests = generate_classes(policy, mig_profiles=[MIG]).manifests
    return ClusterOffer.from_cluster(
        version, [m for m in manifests if m["metadata"]["name"] not in without]
    )


def choose(
    pod: dict[str, Any],
    policy: Policy = AUTO,
    offer: ClusterOffer | None = None,
    namespace: str = "ml",
) -> PathChoice:
    return choose_path(
        pod,
        policy=policy,
        namespace=namespace,
        namespace_labels={},
        offer=offer_for(policy) if offer is None else offer,
    )


# --- the policy field --------------------------------------------------------------------------


def test_path_is_auto_by_default_and_inherited_by_namespace_rules() -> None:
    policy = make_policy(
        path="Templates",
        namespaces=[{"names": ["a"], "sharing": "MPS"}, {"names": ["b"], "path": "Scheduler"}],
        resources=[
            {"name": "nvidia.com/gpu", "deviceClassName": "gpu.nvidia.com", "path": "Auto"},
            {"name": "nvidia.com/mig-*", "deviceClassName": "mig.nvidia.com"},
        ],
    )
    assert AUTO.defaults.path == "Auto"
    assert policy.rules_for("a").path == "Templates"
    assert policy.rules_for("b").path == "Scheduler"
    assert [r.path for r in policy.resources] == ["Auto", None]


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ({"defaults": {"path": "scheduler"}}, 'spec.defaults.path: "scheduler" is not one of'),
        ({"namespaces": [{"names": ["a"], "path": 1}]}, "spec.namespaces[0].path: 1 is not one of"),
        (
            {"resources": [{"name": "x.com/gpu", "deviceClassName": "c", "path": "Webhook"}]},
            'spec.resources[0].path: "Webhook" is not one of Auto, Templates, Scheduler',
        ),
    ],
)
def test_a_wrong_path_is_a_policy_error_naming_field_and_values(
    spec: dict[str, Any], problem: str
) -> None:
    with pytest.raises(Exception, match=r"is invalid") as caught:
        Policy.from_mapping(
            {"apiVersion": "kubectl-dra.io/v1alpha1", "kind": "GPUPolicy", "spec": spec}
        )
    assert problem in str(caught.value)
    assert "Auto, Templates, Scheduler" in str(caught.value)


# --- the decision ------------------------------------------------------------------------------

TWO = make_pod(container("main", gpus="2"))
SHARED_POLICY = make_policy(podSharing="Allowed", sharedClaims="Allowed")
CUSTOM = make_policy(
    resources=[{"name": "example.com/gpu", "deviceClassName": "custom.example.com"}]
)


@pytest.mark.parametrize(
    ("case", "pod", "policy", "offer", "namespace", "reason"),
    [
        (
            "policy path Templates",
            TWO,
            make_policy(path="Templates"),
            None,
            "ml",
            "policy path Templates",
        ),
        (
            "the resource's own path",
            TWO,
            make_policy(
                path="Scheduler",
                resources=[
                    {
                        "name": "nvidia.com/gpu",
                        "deviceClassName": "gpu.nvidia.com",
                        "path": "Templates",
                    }
                ],
            ),
            None,
            "ml",
            "policy path Templates",
        ),
        (
            "init container",
            make_pod(container("main", gpus="1"), init=[container("init", gpus="1")]),
            AUTO,
            None,
            "ml",
            'init container "init" asks for GPUs',
        ),
        (
            "pod sharing annotation",
            make_pod(container(gpus="1"), annotations={POD_SHARING_ANNOTATION: "true"}),
            SHARED_POLICY,
            None,
            "ml",
            "asks its containers to share devices",
        ),
        (
            "shared claim",
            make_pod(container(gpus="1"), annotations={SHARED_CLAIM_ANNOTATION: "team"}),
            SHARED_POLICY,
            None,
            "ml",
            "shares a claim with other pods",
        ),
        (
            "podSharing Always",
            make_pod(container("a", gpus="1"), container("b", gpus="1")),
            make_policy(podSharing="Always"),
            None,
            "ml",
            "2 containers ask for GPUs and podSharing Always",
        ),
        (
            "translated node labels",
            make_pod(nodeSelector={"nvidia.com/gpu.product": "H100"}),
            AUTO,
            None,
            "ml",
            "GPU node labels",
        ),
        ("a zero count", make_pod(container(gpus="0")), AUTO, None, "ml", "whole count of 1"),
        (
            "old server",
            TWO,
            AUTO,
            offer_for(AUTO, version="v1.35.0"),
            "ml",
            "the server is Kubernetes 1.35",
        ),
        ("version unknown", TWO, AUTO, NOTHING, "ml", "version is not known"),
        (
            "class missing",
            TWO,
            TIMESLICED,
            offer_for(TIMESLICED, without=("kubectl-dra-gpu-timeslicing",)),
            "ts",
            "DeviceClass kubectl-dra-gpu-timeslicing is not in the cluster",
        ),
        (
            "MIG profile without a class",
            make_pod(container(gpus="1", resource="nvidia.com/mig-2g.20gb")),
            AUTO,
            None,
            "ml",
            "DeviceClass kubectl-dra-mig-2g.20gb is not in the cluster",
        ),
        (
            "a class whose selectors nobody knows",
            make_pod(container(gpus="1", resource="example.com/gpu")),
            CUSTOM,
            None,
            "ml",
            "no generated DeviceClass serves example.com/gpu",
        ),
    ],
)
def test_each_reason_for_the_template_path(
    case: str,
    pod: dict[str, Any],
    policy: Policy,
    offer: ClusterOffer | None,
    namespace: str,
    reason: str,
) -> None:
    choice = choose(pod, policy, offer, namespace)
    assert choice.path == "templates", case
    assert reason in choice.reason, case
    assert choice.classes == ()


def test_a_class_that_differs_from_the_generated_one_is_not_used() -> None:
    manifests = generate_classes(TIMESLICED).manifests
    for manifest in manifests:
        if manifest["metadata"]["name"] == "kubectl-dra-gpu-timeslicing":
            manifest["spec"]["config"][0]["opaque"]["parameters"]["sharing"]["strategy"] = "MPS"
        if manifest["metadata"]["name"] == "kubectl-dra-gpu":
            manifest["spec"]["selectors"] = [{"cel": {"expression": "true"}}]
    offer = ClusterOffer.from_cluster("v1.37.2", manifests)
    assert "kubectl-dra-gpu-timeslicing differs from the generated one in its config" in (
        choose(TWO, TIMESLICED, offer, "ts").reason
    )
    assert "kubectl-dra-gpu differs from the generated one in its selectors" in (
        choose(TWO, TIMESLICED, offer, "ml").reason
    )


@pytest.mark.parametrize(
    ("namespace", "pod", "classes"),
    [
        ("ml", TWO, {"nvidia.com/gpu": "kubectl-dra-gpu"}),
        ("ts", TWO, {"nvidia.com/gpu": "kubectl-dra-gpu-timeslicing"}),
        (
            "ml",
            make_pod(
                container("a", gpus="1", resource=f"nvidia.com/mig-{MIG}"),
                container("b", gpus="3", resource="nvidia.com/gpu.shared"),
            ),
            {
                f"nvidia.com/mig-{MIG}": f"kubectl-dra-mig-{MIG}",
                "nvidia.com/gpu.shared": "kubectl-dra-gpu.shared-timeslicing",
            },
        ),
        # Under nodeSelectors Ignore the labels stay on the pod for the scheduler to match.
        ("ign", make_pod(nodeSelector={"nvidia.com/gpu.product": "H100"}), None),
    ],
)
def test_pods_that_qualify_get_the_class_of_their_namespace(
    namespace: str, pod: dict[str, Any], classes: dict[str, str] | None
) -> None:
    policy = make_policy(
        namespaces=[
            {"names": ["ts"], "sharing": "TimeSlicing"},
            {"names": ["ign"], "nodeSelectors": "Ignore"},
        ]
    )
    choice = choose(pod, policy, offer_for(policy), namespace)
    assert choice.path == "scheduler", choice.reason
    assert dict(choice.classes) == (classes or {"nvidia.com/gpu": "kubectl-dra-gpu"})
    assert choice.warning is None
    assert "on Kubernetes 1.37" in choice.reason


def test_only_a_scheduler_policy_warns_when_it_falls_back() -> None:
    offer = offer_for(SCHEDULER, without=("kubectl-dra-gpu",))
    strict = choose(TWO, SCHEDULER, offer)
    assert strict.path == "templates"
    assert strict.warning == (
        "policy path Scheduler: this pod takes the template path instead, because "
        "DeviceClass kubectl-dra-gpu is not in the cluster"
    )
    assert choose(TWO, AUTO, offer_for(AUTO, without=("kubectl-dra-gpu",))).warning is None
    old = choose(TWO, SCHEDULER, offer_for(SCHEDULER, version="1.34"))
    assert old.warning is not None and "Kubernetes 1.34" in old.warning


def test_offline_conversion_can_assume_the_generated_classes() -> None:
    assumed = ClusterOffer(version=(1, 37), assume_generated=True)
    assert choose(TWO, TIMESLICED, assumed, "ts").classes == (
        ("nvidia.com/gpu", "kubectl-dra-gpu-timeslicing"),
    )
    assert choose(TWO, TIMESLICED, ClusterOffer(version=(1, 37)), "ts").path == "templates"


def test_offered_classes_ignore_what_is_not_a_device_class() -> None:
    offer = ClusterOffer.from_cluster(
        "v1.37.2",
        [
            {"metadata": {"name": "odd"}, "spec": {"selectors": [{"cel": {"expression": 1}}]}},
            {"metadata": {}},
            {
                "metadata": {"name": "many"},
                "spec": {"selectors": [{"cel": {"expression": "x"}}] * 99},
            },
            {"metadata": {"name": "fine"}, "spec": {}},
        ],
    )
    assert [c.name for c in offer.classes] == ["fine"]
    assert offer.version == (1, 37)


# --- the rename --------------------------------------------------------------------------------


def test_the_rename_uses_the_implicit_name_adds_the_toleration_and_records_path_scheduler() -> None:
    pod = make_pod(
        container("main", gpus="2", requests={"nvidia.com/gpu": "2", "cpu": "1"}),
        container("side", limits={"cpu": "1"}),
    )
    renamed = rename_for_scheduler(
        pod, classes={"nvidia.com/gpu": "kubectl-dra-gpu"}, policy=AUTO, rules=AUTO.defaults
    )
    implicit = IMPLICIT_PREFIX + "kubectl-dra-gpu"
    assert renamed["spec"]["containers"][0]["resources"] == {
        "limits": {implicit: "2"},
        "requests": {implicit: "2", "cpu": "1"},
    }
    assert renamed["spec"]["containers"][1] == pod["spec"]["containers"][1]
    assert renamed["spec"]["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert "resourceClaims" not in renamed["spec"]
    assert json.loads(renamed["metadata"]["annotations"][REWRITTEN_ANNOTATION]) == {
        "version": 2,
        "path": "scheduler",
        "route": "webhook",
        "policy": "builtin",
        "sharing": "Exclusive",
        "containers": [
            {
                "container": "main",
                "resource": "nvidia.com/gpu",
                "count": 2,
                "class": "kubectl-dra-gpu",
            }
        ],
    }
    assert pod["spec"]["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "2"}


def record_of(pod: dict[str, Any]) -> RewrittenRecord:
    return RewrittenRecord.from_annotation(pod["metadata"]["annotations"][REWRITTEN_ANNOTATION])


def demands(record: RewrittenRecord) -> list[tuple[str, str, int]]:
    return [(c.container, c.resource, c.count) for c in record.containers]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policy=policies(), pod=pods(), namespace=st.sampled_from(NAMESPACES), labeled=st.booleans())
def test_the_scheduler_path_gives_each_container_the_template_paths_devices(
    policy: Policy, pod: dict[str, Any], namespace: str, labeled: bool
) -> None:
    labels = {"gpu": "ts"} if labeled else {}
    try:
        webhook = translate(pod, policy=policy, namespace=namespace, namespace_labels=labels)
    except TranslationError:
        event("denied")
        return
    if not webhook.changed:
        event("left alone")
        return
    classes = generate_classes(policy, mig_profiles=[MIG])
    choice = choose_path(
        pod,
        policy=policy,
        namespace=namespace,
        namespace_labels=labels,
        offer=ClusterOffer.from_cluster("v1.37.2", classes.manifests),
    )
    event(choice.path)
    if choice.path != "scheduler":
        return
    rules = policy.rules_for(namespace, labels)
    renamed = rename_for_scheduler(pod, classes=dict(choice.classes), policy=policy, rules=rules)
    implicit = choice.implicit_names
    gpu_keys = {*implicit, *implicit.values()}
    # Nothing but the GPU fields differs, tolerations included.
    assert without_gpu_fields(renamed, gpu_keys) == without_gpu_fields(webhook.pod, gpu_keys)
    ours, theirs = record_of(renamed), record_of(webhook.pod)
    assert demands(ours) == demands(theirs)
    by_name = {c.name: c for c in classes.classes}
    (template,) = webhook.templates
    configs = claim_configs(template)
    requests = {r["name"]: r["exactly"] for r in template["spec"]["spec"]["devices"]["requests"]}
    for entry, planned in zip(ours.containers, theirs.containers, strict=True):
        assert entry.device_class is not None and planned.requests
        generated = by_name[entry.device_class]
        assert generated.resource == entry.resource
        # The same number of devices, of the same driver class, shared the same way.
        assert sum(requests[r]["count"] for r in planned.requests) == entry.count
        rule = policy.resource_rule(entry.resource)
        assert rule is not None
        spec = generated.manifest["spec"]
        class_config = spec["config"][0]["opaque"]["parameters"] if "config" in spec else None
        for name in planned.requests:
            assert requests[name]["deviceClassName"] == rule[0].device_class_name
            assert configs[name] == class_config
        container = next(c for c in renamed["spec"]["containers"] if c["name"] == entry.container)
        value = container["resources"]["limits"][IMPLICIT_PREFIX + entry.device_class]
        assert parse_count(value) == entry.count  # the value as written ("01" is 1)


# --- the webhook -------------------------------------------------------------------------------


def decide(
    pod: dict[str, Any],
    policy: Policy,
    gateway: MemoryGateway,
    *,
    operation: str = "CREATE",
    old: dict[str, Any] | None = None,
    namespace: str = "ml",
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The pod as patched, and the response."""
    body = json.dumps(make_review(pod, operation=operation, old=old, namespace=namespace))
    reviewer = Reviewer(Admission(policy=lambda: policy, gateway=gateway))
    reply = reviewer.answer(body.encode(), "application/json", deadline=Deadline.after(5.0))
    answer = json.loads(reply.body)
    response = answer["response"]
    patch = review.decode_patch(answer) if "patch" in response else []
    return jsonpatch.apply_patch(pod, patch), response


def path_count(path: str) -> float:
    return REGISTRY.get_sample_value("dra_webhook_review_paths_total", {"path": path}) or 0.0


def test_the_webhook_renames_a_qualifying_pod_and_creates_nothing() -> None:
    gateway = MemoryGateway()
    gateway.offered = offer_for(AUTO)
    before = path_count("scheduler")
    patched, response = decide(TWO, AUTO, gateway)
    assert response["allowed"] and "warnings" not in response
    limits = patched["spec"]["containers"][0]["resources"]["limits"]
    assert limits == {IMPLICIT_PREFIX + "kubectl-dra-gpu": "2"}
    assert gateway.templates == {} and gateway.claims == {} and gateway.calls == 0
    record = RewrittenRecord.from_annotation(
        patched["metadata"]["annotations"][REWRITTEN_ANNOTATION]
    )
    assert (record.path, record.route, record.claim) == ("scheduler", "webhook", None)
    assert path_count("scheduler") == before + 1
    assert gateway.offer_refreshes == 1  # the first policy seen asks for a fresh read


def test_before_the_first_read_every_pod_takes_the_template_path() -> None:
    gateway = MemoryGateway()
    before = path_count("templates")
    patched, response = decide(TWO, SCHEDULER, gateway)
    assert "resourceClaims" in patched["spec"] and len(gateway.templates) == 1
    assert response["warnings"] == [
        "policy path Scheduler: this pod takes the template path instead, because the "
        "server's Kubernetes version is not known (yet)"
    ]
    record = RewrittenRecord.from_annotation(
        patched["metadata"]["annotations"][REWRITTEN_ANNOTATION]
    )
    assert (record.path, record.route) == ("templates", "webhook")
    assert path_count("templates") == before + 1


def test_limits_and_denials_apply_on_the_scheduler_path_too() -> None:
    gateway = MemoryGateway()
    policy = make_policy(maxGPUsPerPod=1)
    gateway.offered = offer_for(policy)
    _, response = decide(TWO, policy, gateway)
    assert not response["allowed"]
    assert "policy maxGPUsPerPod is 1" in response["status"]["message"]


def test_the_webhook_uses_the_exact_rule_of_a_labelled_namespace() -> None:
    policy = make_policy(namespaces=[{"labels": {"gpu": "ts"}, "sharing": "TimeSlicing"}])
    gateway = MemoryGateway(namespaces={"ml": {"gpu": "ts"}, "other": {}})
    gateway.offered = offer_for(policy)
    patched, _ = decide(TWO, policy, gateway)
    assert IMPLICIT_PREFIX + "kubectl-dra-gpu-timeslicing" in json.dumps(patched["spec"])
    plain, _ = decide(TWO, policy, gateway, namespace="other")
    assert IMPLICIT_PREFIX + "kubectl-dra-gpu" + '"' in json.dumps(plain["spec"])


def test_a_reapplied_legacy_manifest_is_taken_back_on_a_scheduler_path_pod() -> None:
    gateway = MemoryGateway()
    gateway.offered = offer_for(AUTO)
    live, _ = decide(TWO, AUTO, gateway)
    # `kubectl apply` of the same manifest again: nvidia.com/gpu comes back next to the rename.
    reapplied = copy.deepcopy(live)
    reapplied["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = "2"
    restored, response = decide(reapplied, AUTO, gateway, operation="UPDATE", old=live)
    assert restored == live
    assert "patch" in response
