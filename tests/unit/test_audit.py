"""kubectl dra audit, pure parts: workloads once per owner, the webhook's decision, readiness."""

from __future__ import annotations

from typing import Any

import pytest

from dracore import registration
from dracore.policy import Policy
from hack import fakegpu
from kubectl_dra.audit.decide import decide_all, legacy_demand
from kubectl_dra.audit.registrations import label_selector_matches, registrations
from kubectl_dra.audit.report import ClusterObjects, build_audit
from kubectl_dra.audit.workloads import find_workloads

GPU = "nvidia.com/gpu"


def gpu_policy(**spec: Any) -> Policy:
    return Policy.from_mapping(
        {"apiVersion": "kubectl-dra.io/v1alpha1", "kind": "GPUPolicy", "spec": spec}
    )


def container(name: str, gpus: int | str | None = None, **extra: Any) -> dict[str, Any]:
    limits = {} if gpus is None else {GPU: gpus}
    return {"name": name, "image": "cuda", "resources": {"limits": limits}, **extra}


def template(*containers: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": list(containers), **spec}}


def obj(
    kind: str, name: str, ns: str = "ml", *, owner: tuple[str, str] | None = None, **body: Any
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": ns}
    if owner:
        meta["ownerReferences"] = [{"kind": owner[0], "name": owner[1], "controller": True}]
    return {"kind": kind, "metadata": meta, **body}


def pod(
    name: str, ns: str = "ml", *, owner: tuple[str, str] | None = None, gpus: int = 1
) -> dict[str, Any]:
    return obj("Pod", name, ns, owner=owner, spec=template(container("main", gpus))["spec"])


def test_each_workload_is_counted_once_at_its_top_owner() -> None:
    objects = {
        "Deployment": [
            obj(
                "Deployment", "train", spec={"replicas": 3, "template": template(container("m", 2))}
            )
        ],
        "ReplicaSet": [
            obj(
                "ReplicaSet",
                "train-7f",
                owner=("Deployment", "train"),
                spec={"replicas": 3, "template": template(container("m", 2))},
            ),
            obj(
                "ReplicaSet",
                "orphan",
                spec={"replicas": 2, "template": template(container("m", 1))},
            ),
        ],
        "CronJob": [
            obj(
                "CronJob",
                "nightly",
                spec={
                    "jobTemplate": {
                        "spec": {"parallelism": 2, "template": template(container("m", 1))}
                    }
                },
            )
        ],
        "Job": [
            obj(
                "Job",
                "nightly-1",
                owner=("CronJob", "nightly"),
                spec={"template": template(container("m", 1))},
            ),
            obj(
                "Job",
                "done",
                spec={"template": template(container("m", 1))},
                status={"conditions": [{"type": "Complete", "status": "True"}]},
            ),
        ],
        "DaemonSet": [
            obj(
                "DaemonSet",
                "probe",
                spec={"template": template(container("m", 1))},
                status={"desiredNumberScheduled": 4},
            )
        ],
        "Pod": [
            pod("train-7f-a", owner=("ReplicaSet", "train-7f")),
            pod("nightly-1-x", owner=("Job", "nightly-1")),
            pod("bare"),
            pod("ray-0", owner=("RayCluster", "ray")),
            pod("ray-1", owner=("RayCluster", "ray")),
        ],
    }
    found = {(w.kind, w.name): w.replicas for w in find_workloads(objects)}

    assert found == {
        ("Deployment", "train"): 3,
        ("ReplicaSet", "orphan"): 2,
        ("CronJob", "nightly"): 2,
        ("Job", "done"): 0,  # finished: runs no pods
        ("DaemonSet", "probe"): 4,
        ("Pod", "bare"): 1,
        ("RayCluster", "ray"): 2,  # an owner we do not list: its pods, summed
    }


def test_legacy_demand_follows_the_device_plugin() -> None:
    policy = Policy.default()
    spec = {
        "initContainers": [container("setup", 4), container("side", 1, restartPolicy="Always")],
        "containers": [
            container("a", 2),
            container("b", 1),
            {"name": "c", "resources": {"limits": {"nvidia.com/mig-1g.10gb": "3"}}},
        ],
    }
    # max(largest init 4, app 2+1 + sidecar 1) = 4; MIG resources counted on their own.
    assert legacy_demand({"spec": spec}, policy) == {GPU: 4, "nvidia.com/mig-1g.10gb": 3}
    assert legacy_demand({"spec": {"containers": [container("a")]}}, policy) == {}


def test_a_gpu_sidecar_started_before_an_init_container_runs_beside_it() -> None:
    spec = {
        "initContainers": [container("side", 1, restartPolicy="Always"), container("setup", 4)],
        "containers": [container("a", 2)],
    }
    # The sidecar runs while setup does: 1 + 4, more than the app phase's 2 + 1.
    assert legacy_demand({"spec": spec}, Policy.default()) == {GPU: 5}
    (row,) = decide_all(
        find_workloads({"Pod": [obj("Pod", "p", spec=spec)]}),
        policy=gpu_policy(defaults={"maxGPUsPerPod": 32}),
        namespaces={},
        hooks=[],
    )
    assert sum(r.count for r in row.requests) == row.demand[GPU] == 5


def test_label_selectors_as_the_api_server_matches_them() -> None:
    selector = {
        "matchLabels": {"team": "ml"},
        "matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system"]},
            {"key": "kubectl-dra.io/ignore", "operator": "DoesNotExist"},
        ],
    }
    base = {"team": "ml", "kubernetes.io/metadata.name": "ml"}
    assert label_selector_matches(selector, base)
    assert not label_selector_matches(selector, {**base, "kubectl-dra.io/ignore": "true"})
    assert not label_selector_matches(
        selector, {**base, "kubernetes.io/metadata.name": "kube-system"}
    )
    assert not label_selector_matches(selector, {"kubernetes.io/metadata.name": "ml"})
    assert label_selector_matches(None, {})


def _decide(
    workloads: dict[str, list[dict[str, Any]]],
    policy: Policy,
    configurations: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    hooks = registrations(configurations or [])
    rows = decide_all(find_workloads(workloads), policy=policy, namespaces={}, hooks=hooks)
    return {f"{r.namespace}/{r.name}": r for r in rows}


def configuration(entry: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "kubectl-dra"}, "webhooks": [entry]}


def test_decisions_are_the_webhooks() -> None:
    policy = gpu_policy(exemptNamespaces=["legacy"], defaults={"maxGPUsPerPod": 4})
    rows = _decide(
        {
            "Deployment": [
                obj("Deployment", "ok", spec={"template": template(container("m", 2))}),
                obj("Deployment", "big", spec={"template": template(container("m", 8))}),
                obj("Deployment", "old", "legacy", spec={"template": template(container("m", 1))}),
                obj("Deployment", "cpu", spec={"template": template(container("m"))}),
            ],
            "Pod": [obj("Pod", "frac", spec=template(container("m", "1.5"))["spec"])],
        },
        policy,
    )

    assert set(rows) == {"ml/ok", "ml/big", "legacy/old", "ml/frac"}  # no GPU, no row
    ok = rows["ml/ok"]
    assert (ok.decision, ok.sharing, ok.exempt) == ("rewritten", "Exclusive", None)
    assert [(r.device_class, r.count) for r in ok.requests] == [("gpu.nvidia.com", 2)]
    big = rows["ml/big"]
    assert big.decision == "denied"
    assert big.reason.startswith('Deployment "ml/big"') and "maxGPUsPerPod" in big.reason
    assert rows["ml/frac"].decision == "denied" and '"1.5"' in rows["ml/frac"].reason
    old = rows["legacy/old"]
    assert (old.decision, old.exempt) == (
        "unchanged",
        "namespace legacy is in the policy's exemptNamespaces",
    )


def test_audit_mode_policy_still_reports_what_enforce_would_do() -> None:
    policy = gpu_policy(mode="Audit")
    rows = _decide({"Pod": [pod("p")]}, policy)
    assert rows["ml/p"].decision == "rewritten"


def test_namespaces_no_registration_selects_are_left_unchanged() -> None:
    entry = {
        "name": "gpu-to-dra.kubectl-dra.io",
        "namespaceSelector": {"matchLabels": {"gpu": "dra"}},
    }
    rows = _decide({"Pod": [pod("p")]}, Policy.default(), [configuration(entry)])
    assert rows["ml/p"].decision == "unchanged"
    assert (
        rows["ml/p"].exempt
        == "namespace ml is opted out: no kubectl-dra webhook registration selects it"
    )


def test_pods_the_registrations_conditions_never_match_are_left_unchanged() -> None:
    policy = gpu_policy(
        resources=[{"name": "example.com/gpu", "deviceClassName": "gpu.example.com"}]
    )
    asks = obj(
        "Pod",
        "other",
        spec=template({"name": "m", "resources": {"limits": {"example.com/gpu": 1}}})["spec"],
    )
    # The shipped conditions (nvidia.com/ names only) never send it; the policy's own do.
    shipped = registration.webhook_entry(Policy.default())
    row = _decide({"Pod": [asks]}, policy, [configuration(shipped)])["ml/other"]
    assert row.decision == "unchanged"
    assert row.exempt == (
        "the webhook never sees its pods: kubectl-dra/gpu-to-dra.kubectl-dra.io's matchCondition "
        "asks-for-legacy-gpu-resources is false for pods asking for example.com/gpu"
    )
    generated = registration.webhook_entry(policy)
    row = _decide({"Pod": [asks]}, policy, [configuration(generated)])["ml/other"]
    assert (row.decision, row.exempt) == ("rewritten", None)


def cluster(
    workloads: dict[str, list[dict[str, Any]]], *, nodes: list[fakegpu.FakeNode], **extra: Any
) -> ClusterObjects:
    return ClusterObjects(
        workloads=workloads,
        namespaces=[{"metadata": {"name": "ml"}}],
        nodes=extra.get("node_objects", [fakegpu.make_node(n) for n in nodes]),
        slices=[fakegpu.make_slice(n) for n in nodes],
        classes=extra.get("classes", fakegpu.device_classes()),
        claims=extra.get("claims", []),
        webhook_configurations=extra.get("hooks", []),
    )


def by_check(report: Any, check: str) -> list[tuple[str, str]]:
    return [(f.severity, f.message) for f in report.findings if f.check == check]


def test_gpus_in_mig_mode_do_not_serve_whole_gpu_demand() -> None:
    node = fakegpu.FakeNode("a100", fakegpu.NVIDIA_DRIVER, fakegpu.A100_80GB, mig_gpus=(6, 7))
    workloads = {
        "Deployment": [
            obj("Deployment", "t", spec={"replicas": 7, "template": template(container("m", 1))})
        ]
    }
    report = build_audit(cluster(workloads, nodes=[node]), policy=Policy.default(), source="test")

    (demand,) = report.demand
    # 8 GPUs, but two are split into MIG slices: 6 whole GPUs for 7 pods.
    assert (demand.device_class, demand.needed, demand.matching, demand.free) == (
        "gpu.nvidia.com",
        7,
        6,
        6,
    )
    assert not report.summary.ready
    assert (
        "unready",
        "DeviceClass gpu.nvidia.com: 7 devices needed, 6 free of 6 matching (by ml/Deployment/t)",
    ) in by_check(report, "capacity")
    rows = {(c.model, c.profile): (c.devices, c.units) for c in report.capacity}
    assert rows == {
        ("NVIDIA A100-SXM4-80GB", None): (6, 6),
        ("NVIDIA A100-SXM4-80GB", "1g.10gb"): (14, 2),
    }


def whole_and_mig_classes() -> list[dict[str, Any]]:
    """NVIDIA's classes for a driver publishing each GPU whole and as MIG slices."""
    return [
        fakegpu.make_device_class(
            "gpu.nvidia.com", 'device.attributes["gpu.nvidia.com"].type == "gpu"'
        ),
        fakegpu.make_device_class(
            "mig.nvidia.com", 'device.attributes["gpu.nvidia.com"].type == "mig"'
        ),
    ]


def test_whole_and_mig_demand_draw_on_the_same_gpus() -> None:
    from tests.unit.test_capacity import partitionable_slice

    classes = whole_and_mig_classes()
    workloads = {
        "Pod": [pod("whole")],
        "Deployment": [
            obj(
                "Deployment",
                "mig",
                spec={
                    "replicas": 8,
                    "template": template(
                        {"name": "m", "resources": {"limits": {"nvidia.com/mig-1g.10gb": 1}}}
                    ),
                },
            )
        ],
    }
    objects = ClusterObjects(
        workloads=workloads,
        namespaces=[],
        nodes=[],
        slices=[partitionable_slice("n", 2)],
        classes=classes,
        claims=[],
        webhook_configurations=[],
    )
    report = build_audit(objects, policy=Policy.default(), source="test")

    assert sorted(
        (d.device_class, d.partition, d.needed, d.free, d.units_needed) for d in report.demand
    ) == [
        ("gpu.nvidia.com", False, 1, 2, 1),
        ("mig.nvidia.com", True, 8, 14, 2),  # 8 slices of 7 per GPU: 2 GPUs
    ]
    # Each fits alone; together they need 3 of the 2 GPUs.
    assert (
        "unready",
        "gpu.nvidia.com: whole GPUs and MIG devices draw on the same GPUs: the demand takes 3 physical units, 2 are free",
    ) in by_check(report, "capacity")


def test_readiness_findings() -> None:
    node = fakegpu.FakeNode("h100", fakegpu.NVIDIA_DRIVER, fakegpu.H100_80GB)
    plugin_node = fakegpu.make_node(node)
    plugin_node["status"]["allocatable"] = {"cpu": "64", GPU: "8"}
    classes = [
        *fakegpu.device_classes()[:1],
        fakegpu.make_device_class(
            "kep", 'device.driver == "gpu.nvidia.com"', extended_resource_name=GPU
        ),
    ]
    hooks = [
        {
            "metadata": {"name": "kubectl-dra"},
            "webhooks": [{"name": "gpu-to-dra.kubectl-dra.io", "failurePolicy": "Ignore"}],
        }
    ]
    report = build_audit(
        cluster(
            {"Pod": [pod("p")]},
            nodes=[node],
            node_objects=[plugin_node],
            classes=classes,
            hooks=hooks,
        ),
        policy=Policy.default(),
        source="test",
    )

    deviceclass = by_check(report, "deviceclass")
    assert ("info", "nvidia.com/gpu -> DeviceClass gpu.nvidia.com exists") in deviceclass
    assert (
        "warning",
        "nvidia.com/mig-* -> DeviceClass mig.nvidia.com does not exist (no workload needs it yet)",
    ) in deviceclass
    assert by_check(report, "drivers") == [
        ("info", "gpu.nvidia.com: 8 devices (8 physical, 8 free) on 1 nodes")
    ]
    (plugin,) = by_check(report, "device-plugin")
    assert (
        plugin[0] == "warning"
        and "h100 (nvidia.com/gpu=8)" in plugin[1]
        and "handed out twice" in plugin[1]
    )
    (kep,) = by_check(report, "extended-resource")
    assert kep[0] == "warning" and kep[1].startswith(
        "DeviceClass kep maps nvidia.com/gpu (KEP-5004)"
    )
    assert by_check(report, "webhook") == [
        (
            "warning",
            "kubectl-dra/gpu-to-dra.kubectl-dra.io: failurePolicy Ignore: while the webhook is down, legacy pods are admitted unrewritten",
        )
    ]
    assert report.summary.ready  # warnings only


def test_a_missing_device_class_with_demand_is_unready() -> None:
    node = fakegpu.FakeNode("h100", fakegpu.NVIDIA_DRIVER, fakegpu.H100_80GB)
    report = build_audit(
        cluster({"Pod": [pod("p")]}, nodes=[node], classes=[]), policy=Policy.default(), source="t"
    )
    assert by_check(report, "deviceclass")[0][0] == "unready"
    assert not report.summary.ready


@pytest.mark.parametrize("held", [0, 3])
def test_allocated_devices_reduce_what_is_free(held: int) -> None:
    node = fakegpu.FakeNode("h100", fakegpu.NVIDIA_DRIVER, fakegpu.H100_80GB)
    claims = [
        {
            "status": {
                "allocation": {
                    "devices": {
                        "results": [
                            {"driver": "gpu.nvidia.com", "pool": "h100", "device": f"gpu-{i}"}
                        ]
                    }
                }
            }
        }
        for i in range(held)
    ]
    report = build_audit(
        cluster({"Pod": [pod("p", gpus=6)]}, nodes=[node], claims=claims),
        policy=Policy.default(),
        source="t",
    )
    (demand,) = report.demand
    assert (demand.free, report.summary.ready) == (8 - held, held == 0)


def test_skip_is_honoured_only_where_the_policy_allows_it() -> None:
    skipped = obj("Pod", "p", spec=template(container("m", 1))["spec"])
    skipped["metadata"]["annotations"] = {"kubectl-dra.io/skip": "true"}
    refused = _decide({"Pod": [skipped]}, Policy.default())["ml/p"]
    assert (refused.decision, refused.exempt) == ("denied", None)
    assert "allowSkip" in refused.reason
    allowed = _decide(
        {"Pod": [skipped]}, gpu_policy(namespaces=[{"names": ["ml"], "allowSkip": True}])
    )["ml/p"]
    assert (allowed.decision, allowed.exempt) == (
        "unchanged",
        "annotation kubectl-dra.io/skip is true (allowSkip)",
    )


def test_another_drivers_free_gpus_do_not_serve_whole_and_mig_demand() -> None:
    from tests.unit.test_capacity import partitionable_slice

    classes = [*whole_and_mig_classes(), *fakegpu.device_classes()[-1:]]
    mig_pod = obj(
        "Pod",
        "mig",
        spec=template({"name": "m", "resources": {"limits": {"nvidia.com/mig-1g.10gb": 8}}})[
            "spec"
        ],
    )
    example = fakegpu.FakeNode("ex", fakegpu.EXAMPLE_DRIVER)
    objects = ClusterObjects(
        workloads={"Pod": [pod("whole"), mig_pod]},
        namespaces=[],
        nodes=[],
        slices=[partitionable_slice("n", 2), fakegpu.make_slice(example)],
        classes=classes,
        claims=[],
        webhook_configurations=[],
    )
    report = build_audit(objects, policy=gpu_policy(defaults={"maxGPUsPerPod": 32}), source="t")
    # 3 NVIDIA GPUs needed, 2 free; the example driver's 8 free devices are other hardware.
    assert (
        "unready",
        "gpu.nvidia.com: whole GPUs and MIG devices draw on the same GPUs: the demand takes 3 physical units, 2 are free",
    ) in by_check(report, "capacity")
    assert not report.summary.ready


def shared_claim_deployment(replicas: int) -> dict[str, Any]:
    pod_template = template(container("m", 2))
    pod_template["metadata"]["annotations"] = {"kubectl-dra.io/shared-claim": "team"}
    return obj("Deployment", "serve", spec={"replicas": replicas, "template": pod_template})


@pytest.mark.parametrize("replicas", [1, 3, 6])
def test_a_claim_shared_by_replicas_is_counted_once(replicas: int) -> None:
    node = fakegpu.FakeNode("h100", fakegpu.NVIDIA_DRIVER, fakegpu.H100_80GB)
    policy = gpu_policy(defaults={"sharedClaims": "Allowed"})
    report = build_audit(
        cluster(
            {"Deployment": [shared_claim_deployment(replicas)], "Pod": [pod("own")]}, nodes=[node]
        ),
        policy=policy,
        source="t",
    )
    (demand,) = report.demand
    # The shared claim's 2 devices once, plus the bare pod's own 1.
    assert demand.needed == 3
    (row,) = [w for w in report.workloads if w.name == "serve"]
    assert row.shared_claim == "team"


def test_gpus_the_device_plugin_holds_are_not_free() -> None:
    node = fakegpu.FakeNode("h100", fakegpu.NVIDIA_DRIVER, fakegpu.H100_80GB)
    plugin_node = fakegpu.make_node(node)
    plugin_node["status"]["allocatable"] = {"cpu": "64", GPU: "8"}
    running = pod("legacy-running", gpus=3)
    running["spec"]["nodeName"] = "h100"
    running["status"] = {"phase": "Running"}
    done = pod("legacy-done", gpus=4)
    done["spec"]["nodeName"] = "h100"
    done["status"] = {"phase": "Succeeded"}
    report = build_audit(
        cluster(
            {"Pod": [running, done, pod("new", gpus=6)]},
            nodes=[node],
            node_objects=[plugin_node],
        ),
        policy=Policy.default(),
        source="t",
    )
    (demand,) = report.demand
    # 8 published, 3 held by the device plugin for the running legacy pod (its row counts too).
    assert (demand.matching, demand.free, demand.needed) == (8, 5, 3 + 4 + 6)
    assert ("info", "gpu.nvidia.com: 8 devices (8 physical, 5 free) on 1 nodes") in by_check(
        report, "drivers"
    )


def test_pods_whose_kept_node_selectors_match_no_node_with_devices_are_unready() -> None:
    node = fakegpu.FakeNode("h100", fakegpu.NVIDIA_DRIVER, fakegpu.H100_80GB)
    nowhere = obj(
        "Pod",
        "pinned",
        spec=template(container("m", 1), nodeSelector={"pool": "cpu-only"})["spec"],
    )
    somewhere = obj(
        "Pod",
        "fine",
        spec=template(container("m", 1), nodeSelector={"kubernetes.io/hostname": "h100"})["spec"],
    )
    report = build_audit(
        cluster({"Pod": [nowhere, somewhere]}, nodes=[node]), policy=Policy.default(), source="t"
    )
    assert by_check(report, "placement") == [
        (
            "unready",
            "ml/Pod/pinned: the node selectors it keeps after the rewrite match none of the 1 nodes with devices for its claim (h100); its pods would stay Pending (fix nodeSelector/affinity, or let the policy translate GPU labels)",
        )
    ]
    assert not report.summary.ready
