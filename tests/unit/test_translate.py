"""The translation rules, asserted on the resulting pod and templates (never on patch ops).

Every rewritten pod and every generated object is also validated against the Kubernetes 1.34
OpenAPI schema, strictly, so a field we invent or misspell fails here. Long because the rules
are many; each test is one row of behaviour.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from dracore.errors import TranslationError
from dracore.policy import Policy
from dracore.translate import (
    POD_SHARING_ANNOTATION,
    REWRITTEN_ANNOTATION,
    SHARED_CLAIM_ANNOTATION,
    SKIP_ANNOTATION,
    Translation,
    check_shared_claim_fits,
    restore_rewritten,
    translate,
)
from tests.builders import assert_valid, container, make_pod, make_policy

DEFAULT = Policy.default()


def run(
    pod: dict[str, Any], policy: Policy = DEFAULT, namespace: str = "ml", **kw: Any
) -> Translation:
    before = copy.deepcopy(pod)
    result = translate(pod, policy=policy, namespace=namespace, **kw)
    assert pod == before, "translate must not modify its input"
    assert_valid(result.pod, *result.templates, *result.shared_claims)
    return result


def requests_of(result: Translation) -> list[dict[str, Any]]:
    objects = result.templates or result.shared_claims
    assert len(objects) == 1
    spec = objects[0]["spec"]
    claim_spec = spec["spec"] if objects[0]["kind"] == "ResourceClaimTemplate" else spec
    requests: list[dict[str, Any]] = claim_spec["devices"]["requests"]
    return requests


def configs_of(result: Translation) -> list[dict[str, Any]]:
    spec = result.templates[0]["spec"]["spec"]
    configs: list[dict[str, Any]] = spec["devices"].get("config", [])
    return configs


def record_of(pod: dict[str, Any]) -> dict[str, Any]:
    record: dict[str, Any] = json.loads(pod["metadata"]["annotations"][REWRITTEN_ANNOTATION])
    return record


# --- rule 1: counts, requests vs limits, removal -----------------------------------------------


def test_two_gpu_limit_becomes_one_request_for_two_devices() -> None:
    result = run(make_pod(container("app", gpus=2)))
    pod = result.pod
    assert result.changed
    assert (
        "resources" not in pod["spec"]["containers"][0]
        or "limits" not in pod["spec"]["containers"][0]["resources"]
    )
    assert pod["spec"]["containers"][0]["resources"]["claims"] == [
        {"name": "gpu", "request": "app"}
    ]
    template = result.templates[0]
    assert pod["spec"]["resourceClaims"] == [
        {"name": "gpu", "resourceClaimTemplateName": template["metadata"]["name"]}
    ]
    assert template["metadata"]["namespace"] == "ml"
    assert template["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "kubectl-dra"}
    assert requests_of(result) == [
        {
            "name": "app",
            "exactly": {
                "deviceClassName": "gpu.nvidia.com",
                "allocationMode": "ExactCount",
                "count": 2,
            },
        }
    ]


@pytest.mark.parametrize(
    ("resources", "count"),
    [
        ({"limits": {"nvidia.com/gpu": 3}}, 3),
        ({"limits": {"nvidia.com/gpu": "3"}, "requests": {"nvidia.com/gpu": "3"}}, 3),
        (
            {"requests": {"nvidia.com/gpu": 1}},
            1,
        ),  # a request alone: the API would reject it, we read it
    ],
)
def test_count_comes_from_limit_else_request(resources: dict[str, Any], count: int) -> None:
    result = run(make_pod({"name": "app", "image": "x", "resources": resources}))
    assert requests_of(result)[0]["exactly"]["count"] == count
    assert "resources" not in result.pod["spec"]["containers"][0] or set(
        result.pod["spec"]["containers"][0]["resources"]
    ) == {"claims"}


def test_cpu_memory_and_other_resources_are_untouched() -> None:
    pod = make_pod(
        container(
            "app",
            limits={"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": 1, "example.com/foo": 1},
            requests={"cpu": "2", "memory": "8Gi", "nvidia.com/gpu": 1},
        )
    )
    resources = run(pod).pod["spec"]["containers"][0]["resources"]
    assert resources["limits"] == {"cpu": "4", "memory": "16Gi", "example.com/foo": 1}
    assert resources["requests"] == {"cpu": "2", "memory": "8Gi"}


@pytest.mark.parametrize(
    ("resources", "fragment"),
    [
        (
            {"limits": {"nvidia.com/gpu": "1.5"}},
            'spec.containers[0].resources.limits["nvidia.com/gpu"] is "1.5"',
        ),
        ({"limits": {"nvidia.com/gpu": -1}}, 'limits["nvidia.com/gpu"] is -1'),
        ({"limits": {"nvidia.com/gpu": "two"}}, "whole number"),
        (
            {"limits": {"nvidia.com/gpu": 2}, "requests": {"nvidia.com/gpu": 1}},
            "differs from the limit",
        ),
    ],
)
def test_bad_counts_are_denied_naming_pod_container_and_field(
    resources: dict[str, Any], fragment: str
) -> None:
    pod = make_pod({"name": "trainer", "image": "x", "resources": resources})
    with pytest.raises(TranslationError) as err:
        translate(pod, policy=DEFAULT, namespace="ml")
    message = str(err.value)
    assert 'pod "ml/train"' in message
    assert 'container "trainer"' in message
    assert fragment in message


def test_zero_gpus_are_removed_without_a_claim() -> None:
    result = run(make_pod(container("app", gpus=0, limits={"cpu": "1"})))
    assert result.changed
    assert result.templates == ()
    assert "resourceClaims" not in result.pod["spec"]
    assert result.pod["spec"]["containers"][0]["resources"] == {"limits": {"cpu": "1"}}
    assert record_of(result.pod)["containers"] == [
        {"container": "app", "count": 0, "resource": "nvidia.com/gpu"}
    ]


# --- rule 2: one claim, one request per container, names -------------------------------------


def test_each_gpu_container_gets_its_own_request() -> None:
    result = run(
        make_pod(
            container("trainer", gpus=2), container("sidecar-metrics"), container("eval", gpus=1)
        )
    )
    assert [(r["name"], r["exactly"]["count"]) for r in requests_of(result)] == [
        ("trainer", 2),
        ("eval", 1),
    ]
    containers = result.pod["spec"]["containers"]
    assert containers[0]["resources"]["claims"] == [{"name": "gpu", "request": "trainer"}]
    assert "resources" not in containers[1]
    assert containers[2]["resources"]["claims"] == [{"name": "gpu", "request": "eval"}]


def test_pod_claim_name_avoids_existing_claims_which_stay_untouched() -> None:
    existing = [
        {"name": "gpu", "resourceClaimTemplateName": "nic"},
        {"name": "gpu-2", "resourceClaimName": "x"},
    ]
    app = container("app", gpus=1)
    app["resources"]["claims"] = [{"name": "gpu"}]
    result = run(make_pod(app, resourceClaims=existing))
    claims = result.pod["spec"]["resourceClaims"]
    assert claims[:2] == existing
    assert claims[2]["name"] == "gpu-3"
    assert result.pod["spec"]["containers"][0]["resources"]["claims"] == [
        {"name": "gpu"},
        {"name": "gpu-3", "request": "app"},
    ]


def test_two_resources_in_one_container_become_two_requests() -> None:
    app = container("app", limits={"nvidia.com/gpu": 1, "nvidia.com/mig-1g.10gb": 2})
    result = run(make_pod(app))
    requests = {r["name"]: r["exactly"] for r in requests_of(result)}
    assert set(requests) == {"app-gpu", "app-mig-1g-10gb"}
    assert requests["app-gpu"]["deviceClassName"] == "gpu.nvidia.com"
    mig = requests["app-mig-1g-10gb"]
    assert (mig["deviceClassName"], mig["count"]) == ("mig.nvidia.com", 2)
    assert mig["selectors"] == [
        {
            "cel": {
                "expression": '"profile" in device.attributes["gpu.nvidia.com"] && '
                'device.attributes["gpu.nvidia.com"].profile == "1g.10gb"'
            }
        }
    ]
    assert {
        c["request"] for c in result.pod["spec"]["containers"][0]["resources"]["claims"]
    } == set(requests)


def test_long_container_names_give_valid_request_names() -> None:
    name = "a" * 60 + "-x"
    app = container(name, limits={"nvidia.com/gpu": 1, "nvidia.com/gpu.shared": 1})
    names = [r["name"] for r in requests_of(run(make_pod(app)))]
    assert len(set(names)) == 2
    assert all(len(n) <= 63 for n in names)


# --- rule 3: init containers, sidecars, ephemeral containers --------------------------------


def test_plain_init_container_reuses_app_devices() -> None:
    result = run(make_pod(container("app", gpus=2), init=[container("warmup", gpus=1)]))
    # The app's two devices come as 1 + 1 so that the init container can name exactly one.
    assert [(r["name"], r["exactly"]["count"]) for r in requests_of(result)] == [
        ("app", 1),
        ("app-2", 1),
    ]
    assert result.pod["spec"]["initContainers"][0]["resources"]["claims"] == [
        {"name": "gpu", "request": "app"}
    ]
    assert result.pod["spec"]["containers"][0]["resources"]["claims"] == [
        {"name": "gpu", "request": "app"},
        {"name": "gpu", "request": "app-2"},
    ]


def test_init_container_larger_than_app_adds_only_the_excess() -> None:
    result = run(
        make_pod(
            container("app", gpus=2), init=[container("prep", gpus=3), container("small", gpus=1)]
        )
    )
    # device plugin: max(largest init 3, sum app 2) = 3 devices for the pod
    assert sum(r["exactly"]["count"] for r in requests_of(result)) == 3
    inits = result.pod["spec"]["initContainers"]
    assert inits[0]["resources"]["claims"] == [
        {"name": "gpu", "request": "app"},
        {"name": "gpu", "request": "app-2"},
        {"name": "gpu", "request": "prep"},
    ]
    assert inits[1]["resources"]["claims"] == [{"name": "gpu", "request": "app"}]


def seen(result: Translation, section: str, index: int) -> int:
    """How many devices a container gets: the sum of the requests it names."""
    counts = {r["name"]: r["exactly"]["count"] for r in requests_of(result)}
    refs = result.pod["spec"][section][index]["resources"]["claims"]
    return sum(counts[ref["request"]] for ref in refs)


def test_init_container_sees_exactly_its_count_across_app_requests() -> None:
    # 12 before 8 + 8: the device plugin gave the init container 12 of the pod's 16 devices.
    pod = make_pod(
        container("a", gpus=8), container("b", gpus=8), init=[container("prep", gpus=12)]
    )
    result = run(pod, make_policy(maxGPUsPerPod=16))
    assert [(r["name"], r["exactly"]["count"]) for r in requests_of(result)] == [
        ("a", 8),
        ("b", 4),
        ("b-2", 4),
    ]
    assert seen(result, "initContainers", 0) == 12
    assert [seen(result, "containers", i) for i in (0, 1)] == [8, 8]


def test_init_container_before_a_sidecar_reuses_the_sidecars_devices() -> None:
    # The sidecar starts after the init container ends: max(2, 1 + 1) = 2 devices, not 3.
    sidecar = container("monitor", gpus=1)
    sidecar["restartPolicy"] = "Always"
    pod = make_pod(container("app", gpus=1), init=[container("prep", gpus=2), sidecar])
    result = run(pod, make_policy(maxGPUsPerPod=2))
    assert sum(r["exactly"]["count"] for r in requests_of(result)) == 2
    assert result.pod["spec"]["initContainers"][0]["resources"]["claims"] == [
        {"name": "gpu", "request": "app"},
        {"name": "gpu", "request": "monitor"},
    ]


def test_init_container_after_a_sidecar_cannot_reuse_its_devices() -> None:
    # Here the sidecar runs alongside the init container: 1 + 2 = 3 devices.
    sidecar = container("monitor", gpus=1)
    sidecar["restartPolicy"] = "Always"
    pod = make_pod(container("app", gpus=1), init=[sidecar, container("prep", gpus=2)])
    result = run(pod, make_policy(maxGPUsPerPod=3))
    assert sum(r["exactly"]["count"] for r in requests_of(result)) == 3
    assert seen(result, "initContainers", 1) == 2
    refs = result.pod["spec"]["initContainers"][1]["resources"]["claims"]
    assert {"name": "gpu", "request": "monitor"} not in refs
    with pytest.raises(TranslationError, match="needs 3 GPU devices in all"):
        translate(pod, policy=make_policy(maxGPUsPerPod=2), namespace="ml")


def test_sidecar_has_its_own_request() -> None:
    sidecar = container("monitor", gpus=1)
    sidecar["restartPolicy"] = "Always"
    result = run(make_pod(container("app", gpus=1), init=[sidecar]))
    assert sorted((r["name"], r["exactly"]["count"]) for r in requests_of(result)) == [
        ("app", 1),
        ("monitor", 1),
    ]
    assert result.pod["spec"]["initContainers"][0]["resources"]["claims"] == [
        {"name": "gpu", "request": "monitor"}
    ]


def test_ephemeral_containers_are_never_touched() -> None:
    debug = {"name": "debug", "image": "busybox", "resources": {"limits": {"nvidia.com/gpu": 1}}}
    result = translate(
        make_pod(container("app", gpus=1), ephemeralContainers=[debug]),
        policy=DEFAULT,
        namespace="ml",
    )
    assert result.pod["spec"]["ephemeralContainers"] == [debug]
    assert [r["name"] for r in requests_of(result)] == ["app"]


# --- rule 4: sharing config in the driver's dialect -----------------------------------------


def test_time_slicing_policy_adds_nvidia_gpu_config() -> None:
    policy = make_policy(sharing="TimeSlicing", timeSlicing={"interval": "Long"})
    result = run(make_pod(container("app", gpus=1)), policy)
    assert configs_of(result) == [
        {
            "requests": ["app"],
            "opaque": {
                "driver": "gpu.nvidia.com",
                "parameters": {
                    "apiVersion": "resource.nvidia.com/v1beta1",
                    "kind": "GpuConfig",
                    "sharing": {
                        "strategy": "TimeSlicing",
                        "timeSlicingConfig": {"interval": "Long"},
                    },
                },
            },
        }
    ]


def test_mps_policy_adds_mps_config() -> None:
    policy = make_policy(
        sharing="MPS",
        mps={"defaultActiveThreadPercentage": 25, "defaultPinnedDeviceMemoryLimit": "10Gi"},
    )
    parameters = configs_of(run(make_pod(container("app", gpus=1)), policy))[0]["opaque"][
        "parameters"
    ]
    assert parameters["sharing"] == {
        "strategy": "MPS",
        "mpsConfig": {
            "defaultActiveThreadPercentage": 25,
            "defaultPinnedDeviceMemoryLimit": "10Gi",
        },
    }


def test_mig_time_slicing_uses_mig_device_config_without_interval() -> None:
    policy = make_policy(sharing="TimeSlicing")
    parameters = configs_of(
        run(make_pod(container("app", gpus=1, resource="nvidia.com/mig-3g.40gb")), policy)
    )[0]["opaque"]["parameters"]
    assert parameters == {
        "apiVersion": "resource.nvidia.com/v1beta1",
        "kind": "MigDeviceConfig",
        "sharing": {"strategy": "TimeSlicing"},
    }


def test_example_driver_class_gets_example_driver_config() -> None:
    policy = make_policy(
        sharing="TimeSlicing",
        resources=[{"name": "nvidia.com/gpu", "deviceClassName": "gpu.example.com"}],
    )
    config = configs_of(run(make_pod(container("app", gpus=1)), policy))[0]
    assert config["opaque"]["driver"] == "gpu.example.com"
    assert config["opaque"]["parameters"]["apiVersion"] == "gpu.resource.example.com/v1alpha1"


def test_gpu_shared_resource_is_time_sliced_by_default_and_exclusive_adds_no_config() -> None:
    result = run(
        make_pod(container("a", gpus=1), container("b", gpus=1, resource="nvidia.com/gpu.shared"))
    )
    configs = configs_of(result)
    assert [c["requests"] for c in configs] == [["b"]]
    assert configs[0]["opaque"]["parameters"]["sharing"]["strategy"] == "TimeSlicing"


def test_namespace_rule_overrides_defaults_first_match_wins() -> None:
    policy = make_policy(
        namespaces=[
            {
                "names": ["ml-research"],
                "labels": {"gpu-sharing": "enabled"},
                "sharing": "TimeSlicing",
            },
            {"names": ["ml-research", "batch"], "sharing": "MPS"},
        ]
    )
    pod = make_pod(container("app", gpus=1))
    assert (
        configs_of(run(pod, policy, namespace="ml-research"))[0]["opaque"]["parameters"]["sharing"][
            "strategy"
        ]
        == "TimeSlicing"
    )
    labelled = run(pod, policy, namespace="team-x", namespace_labels={"gpu-sharing": "enabled"})
    assert configs_of(labelled)[0]["opaque"]["parameters"]["sharing"]["strategy"] == "TimeSlicing"
    assert (
        configs_of(run(pod, policy, namespace="batch"))[0]["opaque"]["parameters"]["sharing"][
            "strategy"
        ]
        == "MPS"
    )
    assert configs_of(run(pod, policy, namespace="other")) == []


# --- rule 5: sharing within a pod -------------------------------------------------------------


def test_pod_sharing_always_gives_containers_one_request() -> None:
    policy = make_policy(podSharing="Always")
    result = run(make_pod(container("ctr0", gpus=1), container("ctr1", gpus=2)), policy)
    assert [(r["name"], r["exactly"]["count"]) for r in requests_of(result)] == [("gpu", 2)]
    for c in result.pod["spec"]["containers"]:
        assert c["resources"]["claims"] == [{"name": "gpu", "request": "gpu"}]


@pytest.mark.parametrize(("opt_in", "requests"), [(True, 1), (False, 2)])
def test_pod_sharing_allowed_needs_the_pod_to_opt_in(opt_in: bool, requests: int) -> None:
    annotations = {POD_SHARING_ANNOTATION: "true"} if opt_in else None
    pod = make_pod(container("ctr0", gpus=1), container("ctr1", gpus=1), annotations=annotations)
    assert len(requests_of(run(pod, make_policy(podSharing="Allowed")))) == requests


def test_pod_sharing_annotation_is_refused_where_disabled() -> None:
    pod = make_pod(container("ctr0", gpus=1), annotations={POD_SHARING_ANNOTATION: "true"})
    with pytest.raises(TranslationError, match="podSharing: Disabled"):
        translate(pod, policy=DEFAULT, namespace="ml")


# --- rule 6: sharing across pods through a named claim -----------------------------------------


def test_shared_claim_annotation_points_the_pod_at_a_named_claim() -> None:
    pod = make_pod(container("ctr0", gpus=1), annotations={SHARED_CLAIM_ANNOTATION: "single-gpu"})
    result = run(pod, make_policy(sharedClaims="Allowed"))
    assert result.templates == ()
    assert result.pod["spec"]["resourceClaims"] == [
        {"name": "gpu", "resourceClaimName": "single-gpu"}
    ]
    assert result.pod["spec"]["containers"][0]["resources"]["claims"] == [{"name": "gpu"}]
    claim = result.shared_claims[0]
    assert (claim["kind"], claim["metadata"]["name"], claim["metadata"]["namespace"]) == (
        "ResourceClaim",
        "single-gpu",
        "ml",
    )
    assert requests_of(result)[0]["exactly"]["count"] == 1


@pytest.mark.parametrize(
    ("policy", "name", "fragment"),
    [
        (DEFAULT, "single-gpu", "sharedClaims: Disabled"),
        (make_policy(sharedClaims="Allowed"), "Not_A_Name", "not a valid ResourceClaim name"),
    ],
)
def test_shared_claim_annotation_refused(policy: Policy, name: str, fragment: str) -> None:
    pod = make_pod(container("ctr0", gpus=1), annotations={SHARED_CLAIM_ANNOTATION: name})
    with pytest.raises(TranslationError, match=fragment):
        translate(pod, policy=policy, namespace="ml")


def _claim(device_class: str, count: int) -> dict[str, Any]:
    return {
        "metadata": {"name": "single-gpu"},
        "spec": {
            "devices": {
                "requests": [
                    {"name": "gpu", "exactly": {"deviceClassName": device_class, "count": count}}
                ]
            }
        },
    }


@pytest.mark.parametrize(
    ("existing", "wanted", "problem"),
    [
        (_claim("gpu.example.com", 1), _claim("gpu.example.com", 1), None),
        (_claim("gpu.example.com", 2), _claim("gpu.example.com", 1), None),
        (
            _claim("gpu.example.com", 1),
            _claim("gpu.example.com", 2),
            "holds 1 device(s) of class gpu.example.com; this pod needs 2",
        ),
        (
            _claim("gpu.nvidia.com", 1),
            _claim("gpu.example.com", 1),
            "offers devices of class gpu.nvidia.com, not gpu.example.com",
        ),
    ],
)
def test_shared_claim_fit(
    existing: dict[str, Any], wanted: dict[str, Any], problem: str | None
) -> None:
    assert check_shared_claim_fits(existing, wanted) == (
        problem and f"ResourceClaim single-gpu {problem}"
    )


# --- rule 7: node selection ------------------------------------------------------------------

PRODUCT_CEL = (
    '"productName" in device.attributes["gpu.nvidia.com"] && '
    'device.attributes["gpu.nvidia.com"].productName.replace(" ", "-") == "NVIDIA-A100-SXM4-80GB"'
)


@pytest.mark.parametrize(
    ("mode", "kept", "selectors"),
    [("Translate", False, [PRODUCT_CEL]), ("Keep", True, [PRODUCT_CEL]), ("Ignore", True, [])],
)
def test_product_node_selector_becomes_cel(mode: str, kept: bool, selectors: list[str]) -> None:
    node_selector = {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB", "nvidia.com/gpu.count": "8"}
    result = run(
        make_pod(container("app", gpus=1), nodeSelector=node_selector),
        make_policy(nodeSelectors=mode),
    )
    expected_labels = dict(node_selector) if kept else {"nvidia.com/gpu.count": "8"}
    assert result.pod["spec"]["nodeSelector"] == expected_labels  # node-level labels always stay
    assert [
        s["cel"]["expression"] for s in requests_of(result)[0]["exactly"].get("selectors", [])
    ] == selectors


def test_shared_and_mig_suffixes_are_removed_from_product_labels() -> None:
    pod = make_pod(
        container("app", gpus=1), nodeSelector={"nvidia.com/gpu.product": "Tesla-T4-SHARED"}
    )
    expression = requests_of(run(pod))[0]["exactly"]["selectors"][0]["cel"]["expression"]
    assert expression.endswith('== "Tesla-T4"')


def _affinity(*terms: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": list(t)} for t in terms]
            }
        }
    }


def test_affinity_device_terms_become_cel_and_node_terms_stay() -> None:
    zone = {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["a"]}
    family = {
        "key": "nvidia.com/gpu.family",
        "operator": "In",
        "values": ["hopper", "ada-lovelace"],
    }
    memory = {"key": "nvidia.com/gpu.memory", "operator": "Gt", "values": ["40000"]}
    result = run(make_pod(container("app", gpus=1), affinity=_affinity([zone, family, memory])))
    assert result.pod["spec"]["affinity"] == _affinity([zone])
    expressions = [s["cel"]["expression"] for s in requests_of(result)[0]["exactly"]["selectors"]]
    assert expressions == [
        '"architecture" in device.attributes["gpu.nvidia.com"] && '
        'device.attributes["gpu.nvidia.com"].architecture in ["Hopper", "Ada Lovelace"]',
        '"memory" in device.capacity["gpu.nvidia.com"] && '
        'device.capacity["gpu.nvidia.com"].memory.compareTo(quantity("40001Mi")) >= 0',
    ]


def test_affinity_with_only_device_terms_is_removed_entirely() -> None:
    major = {"key": "nvidia.com/gpu.compute.major", "operator": "Gt", "values": ["7"]}
    result = run(make_pod(container("app", gpus=1), affinity=_affinity([major])))
    assert "affinity" not in result.pod["spec"]
    assert requests_of(result)[0]["exactly"]["selectors"][0]["cel"]["expression"] == (
        '"cudaComputeCapability" in device.attributes["gpu.nvidia.com"] && '
        'device.attributes["gpu.nvidia.com"].cudaComputeCapability.major() > 7'
    )


def test_several_affinity_terms_are_ored_and_labels_kept() -> None:
    a100 = {"key": "nvidia.com/gpu.product", "operator": "In", "values": ["NVIDIA-A100-SXM4-80GB"]}
    h100 = {"key": "nvidia.com/gpu.family", "operator": "In", "values": ["hopper"]}
    pod = make_pod(container("app", gpus=1), affinity=_affinity([a100], [h100]))
    result = run(pod)
    assert result.pod["spec"]["affinity"] == pod["spec"]["affinity"]
    expression = requests_of(result)[0]["exactly"]["selectors"][0]["cel"]["expression"]
    assert expression.startswith("(") and " || " in expression
    assert any("several terms" in w for w in result.warnings)


def test_memory_label_equality_is_a_one_mib_range() -> None:
    pod = make_pod(container("app", gpus=1), nodeSelector={"nvidia.com/gpu.memory": "81920"})
    expression = requests_of(run(pod))[0]["exactly"]["selectors"][0]["cel"]["expression"]
    assert 'quantity("81920Mi")) >= 0' in expression
    assert 'quantity("81921Mi")) < 0' in expression


def test_label_values_cannot_change_the_cel_structure() -> None:
    hostile = 'x" || true || "'
    terms = _affinity([{"key": "nvidia.com/gpu.product", "operator": "In", "values": [hostile]}])
    expression = requests_of(run(make_pod(container("app", gpus=1), affinity=terms)))[0]["exactly"][
        "selectors"
    ][0]["cel"]["expression"]
    assert expression.endswith(r'== "x\" || true || \""')


def test_gfd_labels_are_not_translated_for_non_nvidia_classes() -> None:
    policy = make_policy(
        resources=[{"name": "nvidia.com/gpu", "deviceClassName": "gpu.example.com"}]
    )
    pod = make_pod(container("app", gpus=1), nodeSelector={"nvidia.com/gpu.product": "Tesla-T4"})
    result = run(pod, policy)
    assert result.pod["spec"]["nodeSelector"] == {"nvidia.com/gpu.product": "Tesla-T4"}
    assert "selectors" not in requests_of(result)[0]["exactly"]


# --- rule 8: tolerations ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("existing", "expected"),
    [
        (None, [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]),
        ([{"operator": "Exists"}], [{"operator": "Exists"}]),
        (
            [
                {
                    "key": "nvidia.com/gpu",
                    "operator": "Equal",
                    "value": "present",
                    "effect": "NoSchedule",
                }
            ],
            [
                {
                    "key": "nvidia.com/gpu",
                    "operator": "Equal",
                    "value": "present",
                    "effect": "NoSchedule",
                }
            ],
        ),
        (
            [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}],
            [
                {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"},
                {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
            ],
        ),
    ],
)
def test_gpu_toleration_is_kept_or_added(
    existing: list[dict[str, str]] | None, expected: list[dict[str, str]]
) -> None:
    spec = {"tolerations": existing} if existing else {}
    assert run(make_pod(container("app", gpus=1), **spec)).pod["spec"]["tolerations"] == expected


# --- rule 9: templates and limits --------------------------------------------------------------


def test_template_name_depends_only_on_the_claim_shape() -> None:
    def template_name(pod: dict[str, Any]) -> str:
        return str(run(pod).templates[0]["metadata"]["name"])

    first = template_name(make_pod(container("app", gpus=1), name="a"))
    assert first == template_name(
        make_pod(container("app", gpus=1), name=None)
    )  # generateName pods too
    assert first != template_name(make_pod(container("app", gpus=2), name="a"))
    assert first.startswith("kubectl-dra-")


def test_count_over_32_per_request_is_denied() -> None:
    policy = make_policy(maxGPUsPerPod=32)
    with pytest.raises(TranslationError, match="at most 32 devices per request"):
        translate(make_pod(container("app", gpus=33)), policy=policy, namespace="ml")


def test_pod_over_max_gpus_is_denied_naming_the_limit() -> None:
    pod = make_pod(container("a", gpus=2), container("b", gpus=2))
    with pytest.raises(TranslationError) as err:
        translate(pod, policy=make_policy(maxGPUsPerPod=3), namespace="ml")
    assert str(err.value) == (
        'pod "ml/train" needs 4 GPU devices in all; policy maxGPUsPerPod is 3; ask for fewer, '
        "or split the work across pods"
    )


# --- rules 10, 11: idempotency, pass-through, audit -------------------------------------------


def test_second_pass_is_a_no_op() -> None:
    once = run(make_pod(container("app", gpus=2)))
    twice = translate(once.pod, policy=DEFAULT, namespace="ml")
    assert not twice.changed
    assert twice.pod == once.pod
    assert twice.reason == "already rewritten"


@pytest.mark.parametrize(
    ("pod", "namespace", "policy", "reason"),
    [
        (make_pod(container("app")), "ml", DEFAULT, "no legacy GPU resources"),
        (
            make_pod(container("app", gpus=1)),
            "kube-system",
            DEFAULT,
            "namespace kube-system is exempt",
        ),
        (
            make_pod(container("app", gpus=1), annotations={SKIP_ANNOTATION: "true"}),
            "ml",
            make_policy(allowSkip=True),
            "annotation kubectl-dra.io/skip is true",
        ),
        (
            make_pod(container("app", gpus=1)),
            "ml",
            make_policy(mode="Disabled"),
            "policy mode is Disabled",
        ),
        (
            make_pod(container("app", gpus=1, resource="amd.com/gpu")),
            "ml",
            DEFAULT,
            "no legacy GPU resources",
        ),
    ],
)
def test_pods_left_alone(pod: dict[str, Any], namespace: str, policy: Policy, reason: str) -> None:
    result = translate(pod, policy=policy, namespace=namespace)
    assert (result.changed, result.reason, result.pod) == (False, reason, pod)


def test_pod_already_using_dra_is_untouched() -> None:
    app = {"name": "app", "image": "x", "resources": {"claims": [{"name": "gpus"}]}}
    pod = make_pod(
        app, resourceClaims=[{"name": "gpus", "resourceClaimTemplateName": "multiple-gpus"}]
    )
    assert not translate(pod, policy=DEFAULT, namespace="ml").changed


def test_audit_mode_warns_and_does_not_rewrite() -> None:
    pod = make_pod(container("app", gpus=2))
    result = translate(pod, policy=make_policy(mode="Audit"), namespace="ml")
    assert not result.changed
    assert result.pod == pod
    assert result.warnings[0].startswith(
        "audit: Enforce mode would rewrite this pod: app: 2 nvidia.com/gpu -> claim gpu"
    )
    assert "kubectl-dra.io/would-rewrite" in result.audit


def test_audit_mode_reports_a_denial_as_a_warning() -> None:
    result = translate(
        make_pod(container("app", gpus="x")), policy=make_policy(mode="Audit"), namespace="ml"
    )
    assert not result.changed
    assert result.warnings[0].startswith("audit: Enforce mode would deny this pod:")


def test_rewritten_annotation_records_what_was_replaced() -> None:
    result = run(make_pod(container("app", gpus=2)))
    record = record_of(result.pod)
    assert record == {
        "claim": "gpu",
        "containers": [
            {"container": "app", "count": 2, "requests": ["app"], "resource": "nvidia.com/gpu"}
        ],
        "policy": "builtin",
        "sharing": "Exclusive",
        "template": result.templates[0]["metadata"]["name"],
        "version": 2,
        "path": "templates",
        "route": "webhook",
    }


def test_shared_claim_is_referenced_once_by_a_container_with_two_resources() -> None:
    app = container("ctr0", limits={"nvidia.com/gpu": 1, "nvidia.com/mig-1g.10gb": 1})
    pod = make_pod(app, annotations={SHARED_CLAIM_ANNOTATION: "shared"})
    result = run(pod, make_policy(sharedClaims="Allowed"))
    assert result.pod["spec"]["containers"][0]["resources"]["claims"] == [{"name": "gpu"}]
    assert sorted(r["name"] for r in requests_of(result)) == ["gpu", "mig-1g-10gb"]


def test_record_lists_each_resource_with_its_own_requests() -> None:
    app = container("app", limits={"nvidia.com/gpu": 1, "nvidia.com/gpu.shared": 2})
    record = record_of(run(make_pod(app)).pod)
    assert [(c["resource"], c["requests"]) for c in record["containers"]] == [
        ("nvidia.com/gpu", ["app-gpu"]),
        ("nvidia.com/gpu.shared", ["app-gpu-shared"]),
    ]


def test_affinity_without_device_terms_is_left_alone() -> None:
    zone = {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["a"]}
    pod = make_pod(container("app", gpus=1), affinity=_affinity([zone]))
    assert run(pod).pod["spec"]["affinity"] == pod["spec"]["affinity"]


# --- UPDATE: a re-applied manifest must not put legacy fields back -------------------------


def reapply(live: dict[str, Any], manifest: dict[str, Any]) -> dict[str, Any]:
    """What `kubectl apply` of the unchanged manifest sends: the live pod with its fields back."""
    updated = copy.deepcopy(live)
    for mine, theirs in zip(
        updated["spec"]["containers"], manifest["spec"]["containers"], strict=True
    ):
        for section, values in theirs.get("resources", {}).items():
            mine.setdefault("resources", {}).setdefault(section, {}).update(values)
    for key in ("nodeSelector", "affinity"):
        if key in manifest["spec"]:
            updated["spec"][key] = copy.deepcopy(manifest["spec"][key])
    return updated


def test_reapplied_legacy_fields_are_taken_back_on_update() -> None:
    manifest = make_pod(
        container("app", gpus=2, limits={"cpu": "1"}),
        nodeSelector={"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB", "pool": "a"},
    )
    live = run(manifest).pod
    assert restore_rewritten(live, reapply(live, manifest), policy=DEFAULT) == live


def test_update_of_a_pod_we_did_not_rewrite_is_untouched() -> None:
    pod = make_pod(container("app", gpus=1))
    changed = copy.deepcopy(pod)
    changed["spec"]["containers"][0]["image"] = "other"
    assert restore_rewritten(pod, changed, policy=DEFAULT) == changed


def test_update_keeps_legitimate_changes_of_a_rewritten_pod() -> None:
    live = run(make_pod(container("app", gpus=1))).pod
    changed = copy.deepcopy(live)
    changed["spec"]["containers"][0]["image"] = "nvidia/cuda:13"
    changed["metadata"]["labels"] = {"team": "a"}
    assert restore_rewritten(live, changed, policy=DEFAULT) == changed


def test_update_by_a_controller_of_a_gated_pod_keeps_its_node_selector() -> None:
    """Kueue admits a gated pod by setting a nodeSelector and removing its scheduling gate."""
    manifest = make_pod(
        container("app", gpus=1),
        nodeSelector={"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"},
        schedulingGates=[{"name": "kueue.x-k8s.io/admission"}],
    )
    live = run(manifest).pod
    assert "nodeSelector" not in live["spec"]  # translated into CEL
    admitted = copy.deepcopy(live)
    admitted["spec"]["nodeSelector"] = {
        "cloud.provider/node-pool": "a100",
        "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",  # not the translated value
    }
    del admitted["spec"]["schedulingGates"]
    assert restore_rewritten(live, admitted, policy=DEFAULT) == admitted


def test_reapplied_affinity_terms_are_taken_back_and_other_terms_kept() -> None:
    product = {
        "key": "nvidia.com/gpu.product",
        "operator": "In",
        "values": ["NVIDIA-A100-SXM4-80GB"],
    }
    pool = {"key": "pool", "operator": "In", "values": ["a"]}
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [product, pool]}]
            }
        }
    }
    manifest = make_pod(container("app", gpus=1), affinity=affinity)
    live = run(manifest).pod
    terms = live["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    assert terms["nodeSelectorTerms"] == [{"matchExpressions": [pool]}]
    assert restore_rewritten(live, reapply(live, manifest), policy=DEFAULT) == live


def test_reapplied_affinity_that_was_removed_whole_is_removed_again() -> None:
    product = {
        "key": "nvidia.com/gpu.product",
        "operator": "In",
        "values": ["NVIDIA-A100-SXM4-80GB"],
    }
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [product]}]
            }
        }
    }
    manifest = make_pod(container("app", gpus=1), affinity=affinity)
    live = run(manifest).pod
    assert "affinity" not in live["spec"]
    assert restore_rewritten(live, reapply(live, manifest), policy=DEFAULT) == live
