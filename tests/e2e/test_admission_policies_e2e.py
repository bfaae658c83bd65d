"""e2e: the policy compiled to admission policies, run by the real 1.37.2 API server.

The generated DeviceClasses and the compiled policies are applied, then a corpus of pods is
created with `--dry-run=server` in namespaces our webhook does not serve: the pods the route
handles come back renamed exactly as `InProcessRoute.apply` says (the Python twin the unit tests
compare with the webhook's rewrite), the others come back as the same pod in a namespace no
policy binds. One pod then runs on the real node through the time-sliced class.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from dracore import record as record_mod
from dracore.admission_policies import InProcessRoute, compile_route, webhook_match_conditions
from dracore.classes import generate_classes
from dracore.errors import TranslationError
from dracore.policy import Policy
from dracore.translate import REWRITTEN_ANNOTATION, translate
from hack import node as node_mod
from kubectl_dra.cli import cli
from tests.e2e.e2e_support import ROOT, E2ECluster, legacy_pod, load_yaml_docs
from tests.e2e.test_real_node import Node, real_node, seen, wait_running  # noqa: F401

pytestmark = pytest.mark.e2e

PLAIN, SLICED, LABELLED, HOOKED = "admp-plain", "admp-ts", "admp-lab", "admp-hook"
CONTROL = "admp-exempt"  # exempt: no compiled policy binds here
SHARING_LABEL = "kubectl-dra.io/e2e-sharing"
HOOK_LABEL = "kubectl-dra.io/e2e-unreachable-webhook"
POLICY = {
    "apiVersion": "kubectl-dra.io/v1alpha1",
    "kind": "GPUPolicy",
    "spec": {
        "resources": [{"name": "nvidia.com/gpu", "deviceClassName": "gpu.example.com"}],
        "exemptNamespaces": ["kube-system", CONTROL],
        "defaults": {"maxGPUsPerPod": 4, "podSharing": "Allowed"},
        "namespaces": [
            {
                "names": [SLICED],
                "labels": {SHARING_LABEL: "ts"},
                "sharing": "TimeSlicing",
                "timeSlicing": {"interval": "Long"},
                "maxGPUsPerPod": 8,
            }
        ],
    },
}
KINDS = {
    "MutatingAdmissionPolicy": "mutatingadmissionpolicies",
    "MutatingAdmissionPolicyBinding": "mutatingadmissionpolicybindings",
    "ValidatingAdmissionPolicy": "validatingadmissionpolicies",
    "ValidatingAdmissionPolicyBinding": "validatingadmissionpolicybindings",
    "DeviceClass": "deviceclasses",
}


def _delete(k8s: E2ECluster, manifests: list[dict[str, Any]]) -> None:
    from kubernetes.client.rest import ApiException

    for manifest in reversed(manifests):
        group, version = manifest["apiVersion"].split("/")
        try:
            k8s.custom.delete_cluster_custom_object(
                group, version, KINDS[manifest["kind"]], manifest["metadata"]["name"]
            )
        except ApiException as exc:
            if exc.status != 404:
                raise


@pytest.fixture(scope="module")
def route(k8s: E2ECluster) -> Iterator[InProcessRoute]:
    """Classes and compiled policies applied; our four namespaces made (one labelled)."""
    policy = Policy.from_mapping(POLICY)
    classes = generate_classes(policy)
    compiled = compile_route(policy, classes)
    applied = [*classes.manifests, *compiled.manifests]
    namespaces = {
        PLAIN: {},
        SLICED: {},
        LABELLED: {SHARING_LABEL: "ts"},
        HOOKED: {HOOK_LABEL: "true"},
        CONTROL: {},
    }
    for name, labels in namespaces.items():
        k8s.delete_namespace(name, wait=True)
        k8s.core.create_namespace({"metadata": {"name": name, "labels": labels}})
        k8s.wait_for(
            f"default ServiceAccount in {name}",
            lambda name=name: k8s.core.list_namespaced_service_account(name).items,
            timeout=20,
        )
    try:
        # The API server compiles every expression on create: a refused one fails here.
        k8s.apply(yaml.safe_dump_all(applied))
        yield compiled
    finally:
        _delete(k8s, applied)
        for name in namespaces:
            k8s.delete_namespace(name)


def dry_run(k8s: E2ECluster, pod: dict[str, Any], namespace: str) -> dict[str, Any]:
    """The pod as the API server would store it (admission run, nothing stored)."""
    proc = k8s.kubectl(
        "create", "--dry-run=server", "-n", namespace, "-o", "json", "-f", "-",
        input=json.dumps(pod),
    )  # fmt: skip
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def refusal(k8s: E2ECluster, pod: dict[str, Any], namespace: str) -> str:
    proc = k8s.kubectl(
        "create", "--dry-run=server", "-n", namespace, "-f", "-",
        input=json.dumps(pod), check=False,
    )  # fmt: skip
    assert proc.returncode != 0, f"admitted: {proc.stdout}"
    return proc.stderr


def without_version_2_fields(text: str | None) -> dict[str, Any] | None:
    """A record minus what version 2 adds (the Python twin may still write version 1; the
    compiled record's version-2 fields are checked on their own)."""
    if text is None:
        return None
    record: dict[str, Any] = json.loads(text)
    for key in ("version", "path", "route"):
        record.pop(key, None)
    for container in record["containers"]:
        container.pop("class", None)
    return record


def what_admission_touches(pod: dict[str, Any]) -> dict[str, Any]:
    spec = pod["spec"]
    return {
        "resources": [
            c.get("resources") for c in [*spec.get("initContainers", []), *spec["containers"]]
        ],
        "record": without_version_2_fields(
            (pod["metadata"].get("annotations") or {}).get(REWRITTEN_ANNOTATION)
        ),
        "tolerations": [
            t
            for t in spec.get("tolerations") or []
            if not t["key"].startswith("node.kubernetes.io/")
        ],
    }


def legacy(name: str, count: int | str = 2) -> dict[str, Any]:
    """e2e_support's legacy pod, its count written as the API server writes quantities."""
    pod = legacy_pod(name)
    pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = str(count)
    return pod


def seed_pod() -> dict[str, Any]:
    (pod,) = load_yaml_docs(ROOT / "examples" / "00-legacy-pod.yaml")
    return pod


def pod_sharing_pod() -> dict[str, Any]:
    pod = legacy("shared")
    pod["metadata"]["annotations"] = {"kubectl-dra.io/pod-sharing": "true"}
    pod["spec"]["containers"].append(
        {"name": "second", "image": "busybox", "resources": {"limits": {"nvidia.com/gpu": "1"}}}
    )
    return pod


def init_gpu_pod() -> dict[str, Any]:
    pod = legacy("init", 1)
    pod["spec"]["initContainers"] = [
        {"name": "warm", "image": "busybox", "resources": {"limits": {"nvidia.com/gpu": 2}}}
    ]
    return pod


CORPUS = {
    "seed": (seed_pod, True),
    "pod-sharing": (pod_sharing_pod, False),
    "init-container-gpu": (init_gpu_pod, False),
    "over-max-gpus-per-pod": (lambda: legacy("big", 9), False),
}
NAMESPACES = {PLAIN: {}, SLICED: {}, LABELLED: {SHARING_LABEL: "ts"}}


@pytest.mark.parametrize("namespace", sorted(NAMESPACES))
@pytest.mark.parametrize("case", sorted(CORPUS))
def test_compiled_policies_rename_exactly_the_pods_they_handle(
    k8s: E2ECluster, route: InProcessRoute, case: str, namespace: str
) -> None:
    make, handled = CORPUS[case]
    # The same pod where no policy binds: defaulted and admitted, otherwise untouched.
    control = dry_run(k8s, make(), CONTROL)
    labels = NAMESPACES[namespace]
    expected = route.apply(control, namespace=namespace, labels=labels)
    assert (expected is not None) == handled
    got = dry_run(k8s, make(), namespace)
    assert what_admission_touches(got) == what_admission_touches(expected or control)
    if handled:
        sharing = "Exclusive" if namespace == PLAIN else "TimeSlicing"
        suffix = "" if namespace == PLAIN else "-timeslicing-long"
        (container,) = got["spec"]["containers"]
        implicit = f"deviceclass.resource.kubernetes.io/kubectl-dra-gpu{suffix}"
        assert container["resources"] == {"limits": {implicit: "2"}, "requests": {implicit: "2"}}
        record = json.loads(got["metadata"]["annotations"][REWRITTEN_ANNOTATION])
        assert record["sharing"] == sharing
        assert (record["version"], record["path"], record["route"]) == (
            2,
            "scheduler",
            "admission-policy",
        )
        assert record["containers"] == [
            {
                "container": "app-container",
                "count": 2,
                "resource": "nvidia.com/gpu",
                "class": f"kubectl-dra-gpu{suffix}",
            }
        ]
        assert (record["version"], record["path"], record["route"]) == (
            2,
            "scheduler",
            "admission-policy",
        )


def test_a_pod_naming_a_policy_class_over_the_limit_is_denied_in_the_webhooks_words(
    k8s: E2ECluster, route: InProcessRoute
) -> None:
    by_hand = legacy("by-hand", 5)
    limits = by_hand["spec"]["containers"][0]["resources"]["limits"]
    limits["deviceclass.resource.kubernetes.io/kubectl-dra-gpu-timeslicing-long"] = limits.pop(
        "nvidia.com/gpu"
    )
    message = refusal(k8s, by_hand, PLAIN)
    with pytest.raises(TranslationError) as webhook:
        translate(legacy("by-hand", 5), policy=route.policy, namespace=PLAIN)
    assert str(webhook.value) in message
    assert route.denial(by_hand, namespace=PLAIN) == str(webhook.value)
    # Within the limit, the same pod is admitted as written.
    limits[next(iter(limits))] = "3"
    assert dry_run(k8s, by_hand, PLAIN)["spec"]["containers"][0]["resources"]["limits"] == limits


def test_a_label_rule_wins_over_the_defaults_in_the_validating_policies(
    k8s: E2ECluster, route: InProcessRoute
) -> None:
    """LABELLED carries the first rule's labels (maxGPUsPerPod 8), the defaults allow 4: the
    defaults' policies read the namespace's labels and stand aside."""
    by_hand = legacy("by-hand", 6)
    limits = by_hand["spec"]["containers"][0]["resources"]["limits"]
    limits["deviceclass.resource.kubernetes.io/kubectl-dra-gpu"] = limits.pop("nvidia.com/gpu")
    assert route.denial(by_hand, namespace=LABELLED, labels={SHARING_LABEL: "ts"}) is None
    assert dry_run(k8s, by_hand, LABELLED)["spec"]["containers"][0]["resources"]["limits"] == limits
    assert "policy maxGPUsPerPod is 4" in refusal(k8s, by_hand, PLAIN)


def test_the_webhook_registered_with_the_complement_sees_only_the_pods_left_to_it(
    k8s: E2ECluster, route: InProcessRoute
) -> None:
    """A webhook nobody answers, registered for HOOKED with `webhook_match_conditions`: a pod
    the route renamed never calls it (the policies run first), every other one does."""
    name = "admp-unreachable.kubectl-dra.io"
    configuration = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": name,
                "admissionReviewVersions": ["v1"],
                "clientConfig": {"url": "https://127.0.0.1:9/mutate"},
                "rules": [
                    {
                        "operations": ["CREATE"],
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "resources": ["pods"],
                    }
                ],
                "namespaceSelector": {"matchLabels": {HOOK_LABEL: "true"}},
                "matchConditions": webhook_match_conditions(route.policy),
                "sideEffects": "None",
                "failurePolicy": "Fail",
                "timeoutSeconds": 2,
            }
        ],
    }
    k8s.apply(yaml.safe_dump(configuration))
    try:
        renamed = dry_run(k8s, seed_pod(), HOOKED)
        assert REWRITTEN_ANNOTATION in renamed["metadata"]["annotations"]
        for make in (pod_sharing_pod, init_gpu_pod, lambda: legacy("big", 9)):
            assert "failed calling webhook" in refusal(k8s, make(), HOOKED)
        no_gpu = legacy("no-gpu")
        del no_gpu["spec"]["containers"][0]["resources"]
        assert dry_run(k8s, no_gpu, HOOKED)["metadata"]["name"] == "no-gpu"
    finally:
        k8s.kubectl("delete", "mutatingwebhookconfiguration", name, check=False)


def test_a_pod_renamed_in_process_runs_time_sliced_on_the_real_node(
    k8s: E2ECluster,
    route: InProcessRoute,
    real_node: Node,  # noqa: F811
) -> None:
    (pod,) = node_mod.for_real_node([legacy("sliced", 1)])
    pod["spec"]["containers"][0]["command"] = [
        "sh",
        "-c",
        "export; trap 'exit 0' TERM; sleep 9999 & wait",
    ]
    k8s.core.create_namespaced_pod(SLICED, pod)
    try:
        running = wait_running(k8s, real_node, SLICED, "sliced")
        assert REWRITTEN_ANNOTATION in running["metadata"]["annotations"]
        assert (
            running["status"]["extendedResourceClaimStatus"]["requestMappings"][0]["resourceName"]
            == "deviceclass.resource.kubernetes.io/kubectl-dra-gpu-timeslicing-long"
        )
        saw = seen(k8s, SLICED, "sliced", "main")
        assert len(saw.devices) == 1
        assert saw.settings() == {("TimeSlicing", "Long")}
        if record_mod.VERSION < 2:
            pytest.skip("describe reads the version-2 record once dracore.record reads it")
        # describe reads the record: the original request, and the scheduler's claim.
        described = CliRunner().invoke(
            cli,
            [
                "describe",
                "pod",
                "sliced",
                "-n",
                SLICED,
                "-o",
                "json",
                "--kubeconfig",
                str(k8s.kubeconfig),
            ],
            prog_name="kubectl dra",
        )
        assert described.exit_code == 0, described.output
        (report,) = json.loads(described.stdout)["items"]
        assert report["rewritten"]["containers"] == [
            {"container": "main", "resource": "nvidia.com/gpu", "count": 1}
        ]
        assert report["rewritten"]["claim"] is None and report["rewritten"]["error"] is None
        assert [c["origin"] for c in report["claims"]] == ["extended-resource"]
    finally:
        k8s.core.delete_namespaced_pod("sliced", SLICED, grace_period_seconds=0)
