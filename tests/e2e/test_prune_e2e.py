"""`kubectl dra prune` on the real control plane: what deleted legacy pods leave behind.

Legacy pods go through our webhook, which creates a ResourceClaimTemplate per pod shape and a
named shared claim; the pods are deleted, and prune must find exactly the leftovers, keep what
a remaining pod uses, and delete only objects unchanged since it listed them.

Objects made during a test are minutes old at most and the grace period is at least 5 minutes,
so the command itself finds nothing to delete; the same reads, plan and deletions then run
with the clock two hours on (the command's parts, called as the command calls them).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from kubectl_dra.cli import cli
from kubectl_dra.kube import KubeGateway
from kubectl_dra.prune import MANAGED_SELECTOR, PrunePlan, plan_prune
from tests.e2e.e2e_support import E2ECluster, WebhookPool, legacy_pod

pytestmark = pytest.mark.e2e

SHARED_CLAIM = "team-gpu"
POLICY = yaml.safe_dump(
    {
        "apiVersion": "kubectl-dra.io/v1alpha1",
        "kind": "GPUPolicy",
        "spec": {"mode": "Enforce", "defaults": {"sharedClaims": "Allowed"}},
    }
)


def create(k8s: E2ECluster, namespace: str, pod: dict[str, Any]) -> dict[str, Any]:
    k8s.apply(json.dumps(pod), namespace=namespace)
    return k8s.get_pod(namespace, pod["metadata"]["name"])


def template_of(pod: dict[str, Any]) -> str:
    (ref,) = pod["spec"]["resourceClaims"]
    name: str = ref["resourceClaimTemplateName"]
    return name


def plan_later(gateway: KubeGateway, namespace: str) -> PrunePlan:
    """What prune decides two hours from now, from the cluster as it is."""
    templates = gateway.list_labelled(
        "ResourceClaimTemplate", namespace, label_selector=MANAGED_SELECTOR
    )
    claims = gateway.list_labelled("ResourceClaim", namespace, label_selector=MANAGED_SELECTOR)
    return plan_prune(
        templates=templates,
        claims=claims,
        pods=gateway.list_pods(namespace),
        now=datetime.now(UTC) + timedelta(hours=2),
        grace=timedelta(hours=1),
    )


def test_prune_lists_then_deletes_what_deleted_legacy_pods_left(
    k8s: E2ECluster, webhooks: WebhookPool, namespace: str
) -> None:
    webhooks.use(namespace, POLICY)
    keeper = create(k8s, namespace, legacy_pod("keeper", gpus=1))
    one = create(k8s, namespace, legacy_pod("one", gpus=1))
    two = create(k8s, namespace, legacy_pod("two", gpus=2))
    shared = legacy_pod("shared", gpus=1)
    shared["metadata"]["annotations"] = {"kubectl-dra.io/shared-claim": SHARED_CLAIM}
    create(k8s, namespace, shared)
    assert template_of(keeper) == template_of(one) != template_of(two)
    made = {t["metadata"]["name"] for t in k8s.list_templates(namespace)}
    assert made == {template_of(one), template_of(two)}
    k8s.get_claim(namespace, SHARED_CLAIM)  # made by the webhook

    for name in ("one", "two", "shared"):
        k8s.core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
    k8s.wait_for(
        "the deleted pods to be gone",
        lambda: [p["metadata"]["name"] for p in k8s.list_pods(namespace)] == ["keeper"],
    )

    # The command: everything is minutes old, so a dry run lists nothing and deletes nothing.
    args = ["prune", "-n", namespace, "--kubeconfig", str(k8s.kubeconfig), "-o", "json"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["items"] == []
    assert "0 would be deleted" in result.stderr and "newer than --older-than" in result.stderr
    assert len(k8s.list_templates(namespace)) == 2

    # Two hours on: the template of the deleted 2-GPU pod and the shared claim are left over
    # (the claim once the controller has dropped the deleted pod from status.reservedFor); the
    # template the remaining pod uses is not, nor any claim generated for a pod.
    gateway = KubeGateway.from_kubeconfig(str(k8s.kubeconfig))

    def both_left_over() -> PrunePlan | None:
        plan = plan_later(gateway, namespace)
        return plan if len(plan.leftovers) == 2 else None

    plan = k8s.wait_for("the shared claim to be released", both_left_over, timeout=60)
    leftovers = {(o.kind, o.name): o for o in plan.leftovers}
    assert set(leftovers) == {
        ("ResourceClaimTemplate", template_of(two)),
        ("ResourceClaim", SHARED_CLAIM),
    }

    # A deletion is conditional on the object being the one listed.
    claim = leftovers[("ResourceClaim", SHARED_CLAIM)]
    k8s.custom.patch_namespaced_custom_object(
        "resource.k8s.io",
        "v1",
        namespace,
        "resourceclaims",
        SHARED_CLAIM,
        {"metadata": {"labels": {"touched": "yes"}}},
    )
    outcome = gateway.delete_unchanged(
        claim.kind, namespace, claim.name, uid=claim.uid, resource_version=claim.resource_version
    )
    assert outcome == "changed"
    k8s.get_claim(namespace, SHARED_CLAIM)  # still there

    template = leftovers[("ResourceClaimTemplate", template_of(two))]
    delete = lambda: gateway.delete_unchanged(  # noqa: E731
        template.kind,
        namespace,
        template.name,
        uid=template.uid,
        resource_version=template.resource_version,
    )
    assert delete() == "deleted"
    assert delete() == "gone"
    assert {t["metadata"]["name"] for t in k8s.list_templates(namespace)} == {template_of(one)}
    assert [o.name for o in plan_later(gateway, namespace).leftovers] == [SHARED_CLAIM]


def test_a_pod_whose_template_was_deleted_waits_until_the_template_is_back(
    k8s: E2ECluster, namespace: str
) -> None:
    """What a pod admitted just before prune deleted its template goes through: the
    controller-manager cannot make its claim, says so in an event, and makes it once a
    template of that name exists again (the webhook makes it for the next pod of that shape
    once it no longer remembers it)."""
    name = "kubectl-dra-pruned"
    template = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaimTemplate",
        "metadata": {"name": name},
        "spec": {
            "spec": {
                "devices": {
                    "requests": [{"name": "gpu", "exactly": {"deviceClassName": "gpu.example.com"}}]
                }
            }
        },
    }
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "orphan"},
        "spec": {
            "containers": [
                {"name": "main", "image": "busybox", "resources": {"claims": [{"name": "gpu"}]}}
            ],
            "resourceClaims": [{"name": "gpu", "resourceClaimTemplateName": name}],
        },
    }
    k8s.apply(json.dumps(pod), namespace=namespace)

    def event_about_template() -> str | None:
        events = k8s.core.list_namespaced_event(
            namespace, field_selector="involvedObject.name=orphan"
        ).items
        found = [f"{e.reason}: {e.message}" for e in events if name in (e.message or "")]
        return found[0] if found else None

    event = k8s.wait_for("an event naming the missing template", event_about_template)
    assert "not found" in event, event
    assert k8s.list_claims(namespace) == []

    k8s.apply(json.dumps(template), namespace=namespace)
    claims = k8s.wait_for(
        "the claim, once the template exists again", lambda: k8s.list_claims(namespace), timeout=90
    )
    assert [
        c["metadata"]["annotations"]["resource.kubernetes.io/pod-claim-name"] for c in claims
    ] == ["gpu"]
