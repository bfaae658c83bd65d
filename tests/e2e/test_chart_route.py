"""The chart's admission-policy hooks as rendered by the real helm (no cluster needed).

Rendered only where the API server serves MutatingAdmissionPolicy v1; the hook's rights are
exactly what `dra-webhook admission-policies apply|delete` uses; the Jobs run like the
certificate hook (same security context and placement).
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.e2e.test_chart import CHART, run, tool

pytestmark = pytest.mark.e2e

MAP_V1 = "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy"


def rendered(*sets: str, served: bool = True) -> list[dict[str, Any]]:
    args = [tool("helm"), "template", "kubectl-dra", str(CHART), "-n", "gpu-system"]
    args += ["--kube-version", "1.37.2", *(["--api-versions", MAP_V1] if served else [])]
    for value in sets:
        args += ["--set", value]
    return [d for d in yaml.safe_load_all(run(*args).stdout) if d]


def route_objects(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        f"{d['kind']}/{d['metadata']['name']}": d
        for d in docs
        if "admission-policies" in d["metadata"]["name"]
    }


def test_nothing_is_rendered_where_the_server_has_no_mutating_admission_policy() -> None:
    assert route_objects(rendered(served=False)) == {}


def test_the_hook_has_only_the_rights_the_installer_uses() -> None:
    objects = route_objects(rendered("admissionPolicies.migProfiles={1g.10gb,3g.40gb}"))
    assert sorted(objects) == [
        "ClusterRole/kubectl-dra:admission-policies",
        "ClusterRoleBinding/kubectl-dra:admission-policies",
        "Job/kubectl-dra-admission-policies",
        "Job/kubectl-dra-admission-policies-delete",
        "ServiceAccount/kubectl-dra-admission-policies",
    ]
    rules = objects["ClusterRole/kubectl-dra:admission-policies"]["rules"]
    write = ["create", "patch", "delete", "list"]
    assert rules == [
        {
            "apiGroups": ["admissionregistration.k8s.io"],
            "resources": [
                "mutatingadmissionpolicies",
                "mutatingadmissionpolicybindings",
                "validatingadmissionpolicies",
                "validatingadmissionpolicybindings",
            ],
            "verbs": write,
        },
        {"apiGroups": ["resource.k8s.io"], "resources": ["deviceclasses"], "verbs": write},
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]},
    ]
    for name, doc in objects.items():
        hook = doc["metadata"]["annotations"]
        assert "hook-succeeded" in hook["helm.sh/hook-delete-policy"], name
    apply = objects["Job/kubectl-dra-admission-policies"]
    assert apply["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    (container,) = apply["spec"]["template"]["spec"]["containers"]
    assert container["args"] == [
        "admission-policies", "apply", "--policy=/etc/kubectl-dra/policy/policy.yaml",
        "--policy-configmap=gpu-system/kubectl-dra-policy:policy.yaml",
        "--webhook-namespace=gpu-system", "--mig-profile=1g.10gb", "--mig-profile=3g.40gb",
    ]  # fmt: skip
    delete = objects["Job/kubectl-dra-admission-policies-delete"]
    assert delete["metadata"]["annotations"]["helm.sh/hook"] == "pre-delete"
    (container,) = delete["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["admission-policies", "delete"]


def test_the_jobs_run_like_the_certificate_hook() -> None:
    docs = rendered("nodeSelector.pool=system", "tolerations[0].operator=Exists")
    (certs,) = [
        d for d in docs if d["kind"] == "Job" and d["metadata"]["name"] == "kubectl-dra-certs"
    ]
    for job in (d for d in docs if d["kind"] == "Job" and d is not certs):
        pod, theirs = job["spec"]["template"]["spec"], certs["spec"]["template"]["spec"]
        for key in ("securityContext", "nodeSelector", "tolerations"):
            assert pod[key] == theirs[key], (job["metadata"]["name"], key)
        assert pod["containers"][0]["securityContext"] == theirs["containers"][0]["securityContext"]
        assert pod["containers"][0]["image"] == theirs["containers"][0]["image"]


def test_turned_off_the_upgrade_hook_deletes_what_was_installed() -> None:
    objects = route_objects(rendered("admissionPolicies.enabled=false"))
    (container,) = objects["Job/kubectl-dra-admission-policies"]["spec"]["template"]["spec"][
        "containers"
    ]
    assert container["args"] == ["admission-policies", "delete"]


@pytest.mark.parametrize("value", ["admissionPolicies.migProfiles={a b}", "admissionPolicies.x=1"])
def test_bad_values_are_refused(value: str) -> None:
    args = [tool("helm"), "template", "kubectl-dra", str(CHART), "--set", value]
    proc = run(*args, check=False)
    assert proc.returncode != 0 and "admissionPolicies" in proc.stderr
