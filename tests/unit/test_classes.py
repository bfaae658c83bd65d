"""dracore.classes: the DeviceClasses a policy needs for the scheduler's KEP-5004 path."""

from __future__ import annotations

from collections import Counter
from typing import Any

import kubernetes_validate
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dracore.classes import (
    IMPLICIT_PREFIX,
    class_name,
    generate_classes,
    implicit_resource_name,
    is_claimable_resource_name,
    parse_kubernetes_version,
    published_mig_profiles,
    scheduler_path_not_offered,
    serves_extended_resource_names,
)
from dracore.names import is_dns_subdomain
from dracore.policy import Policy
from kubectl_dra import celcheck
from tests.builders import assert_valid, make_device, make_slice


def policy(**spec: Any) -> Policy:
    return Policy.from_mapping(
        {"apiVersion": "kubectl-dra.io/v1alpha1", "kind": "GPUPolicy", "spec": spec}
    )


def by_name(result: Any) -> dict[str, Any]:
    return {c.name: c for c in result.classes}


def expressions(manifest: dict[str, Any]) -> list[str]:
    return [s["cel"]["expression"] for s in manifest["spec"]["selectors"]]


def matches(manifest: dict[str, Any], device: dict[str, Any]) -> bool:
    value = celcheck.device_value(device, driver="gpu.nvidia.com")
    return all(celcheck.check(e).evaluate(value) for e in expressions(manifest))


def test_builtin_policy_makes_an_exclusive_gpu_class_that_claims_nvidia_gpu() -> None:
    result = generate_classes(Policy.default())
    classes = by_name(result)
    assert list(classes) == ["kubectl-dra-gpu", "kubectl-dra-gpu.shared-timeslicing"]
    gpu = classes["kubectl-dra-gpu"]
    assert (gpu.resource, gpu.sharing, gpu.extended_resource_name) == (
        "nvidia.com/gpu",
        "Exclusive",
        "nvidia.com/gpu",
    )
    assert "config" not in gpu.manifest["spec"]
    assert gpu.manifest["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "kubectl-dra"}
    assert gpu.implicit_resource_name == "deviceclass.resource.kubernetes.io/kubectl-dra-gpu"
    # The time-sliced resource of the device plugin keeps its own name and config.
    shared = classes["kubectl-dra-gpu.shared-timeslicing"]
    assert shared.extended_resource_name == "nvidia.com/gpu.shared"
    (config,) = shared.manifest["spec"]["config"]
    assert config["opaque"]["parameters"]["kind"] == "GpuConfig"
    assert config["opaque"]["parameters"]["sharing"]["strategy"] == "TimeSlicing"
    # The wildcard MIG rule needs profiles; it says so instead of guessing.
    assert any("nvidia.com/mig-*" in note and "--mig-profile" in note for note in result.notes)


def test_gpu_class_selects_full_gpus_and_not_mig_devices() -> None:
    gpu = by_name(generate_classes(Policy.default()))["kubectl-dra-gpu"].manifest
    assert matches(gpu, make_device("gpu-0"))
    assert not matches(gpu, make_device("mig-0", type_="mig", profile="1g.10gb"))
    assert not matches(gpu, make_device("odd", type_=None))  # guarded: no runtime error


def test_namespace_sharing_becomes_classes_reached_only_by_their_implicit_name() -> None:
    result = generate_classes(
        policy(
            resources=[{"name": "nvidia.com/gpu", "deviceClassName": "gpu.nvidia.com"}],
            namespaces=[
                {"names": ["a"], "sharing": "TimeSlicing"},
                {"names": ["b"], "sharing": "MPS"},
                {"names": ["c"], "sharing": "TimeSlicing", "timeSlicing": {"interval": "Long"}},
                {"names": ["d"], "sharing": "TimeSlicing"},  # the same class as "a"
                {"names": ["e"], "sharing": "MPS", "mps": {"defaultActiveThreadPercentage": 20}},
            ],
        )
    )
    classes = by_name(result)
    assert [(c.name, c.sharing) for c in result.classes][:4] == [
        ("kubectl-dra-gpu", "Exclusive"),
        ("kubectl-dra-gpu-timeslicing", "TimeSlicing"),
        ("kubectl-dra-gpu-mps", "MPS"),
        ("kubectl-dra-gpu-timeslicing-long", "TimeSlicing"),
    ]
    (other_mps,) = result.classes[4:]
    assert other_mps.name.startswith("kubectl-dra-gpu-mps-")
    assert [c.name for c in result.classes if c.extended_resource_name] == ["kubectl-dra-gpu"]
    long = classes["kubectl-dra-gpu-timeslicing-long"].manifest["spec"]["config"][0]
    assert long["opaque"]["parameters"]["sharing"]["timeSlicingConfig"] == {"interval": "Long"}
    mps = other_mps.manifest["spec"]["config"][0]["opaque"]["parameters"]["sharing"]
    assert mps == {"strategy": "MPS", "mpsConfig": {"defaultActiveThreadPercentage": 20}}
    assert_valid(*result.manifests)


def test_default_sharing_decides_which_class_claims_the_name() -> None:
    result = generate_classes(
        policy(
            resources=[{"name": "nvidia.com/gpu", "deviceClassName": "gpu.nvidia.com"}],
            defaults={"sharing": "TimeSlicing"},
            namespaces=[{"names": ["strict"], "sharing": "Exclusive"}],
        )
    )
    claimed = {c.name: c.extended_resource_name for c in result.classes}
    assert claimed == {"kubectl-dra-gpu-timeslicing": "nvidia.com/gpu", "kubectl-dra-gpu": None}


def test_mig_profiles_make_one_class_each_with_the_profile_as_a_literal() -> None:
    result = generate_classes(Policy.default(), mig_profiles=["1g.10gb", "3g.40gb", "1g.10gb"])
    mig = [c for c in result.classes if c.resource.startswith("nvidia.com/mig-")]
    assert [(c.name, c.extended_resource_name) for c in mig] == [
        ("kubectl-dra-mig-1g.10gb", "nvidia.com/mig-1g.10gb"),
        ("kubectl-dra-mig-3g.40gb", "nvidia.com/mig-3g.40gb"),
    ]
    manifest = mig[0].manifest
    assert matches(manifest, make_device("m", type_="mig", profile="1g.10gb"))
    assert not matches(manifest, make_device("m", type_="mig", profile="3g.40gb"))
    assert not matches(manifest, make_device("g", type_="gpu"))
    assert not result.notes
    assert_valid(*result.manifests)


HOSTILE_PROFILES = [
    '1g" || true || "',
    '1g\\" || true',
    'x") || device.driver != ("',
    "1g.10gb+me",
    "ÄÖ\u202e\u0000",
]


@pytest.mark.parametrize("profile", HOSTILE_PROFILES)
def test_a_hostile_profile_selects_only_devices_with_exactly_that_profile(profile: str) -> None:
    result = generate_classes(Policy.default(), mig_profiles=[profile])
    hostile = [c for c in result.classes if c.resource == f"nvidia.com/mig-{profile}"]
    if "\u0000" in profile:  # not printable: refused, with a note
        assert not hostile
        assert any("MIG profile" in n for n in result.notes)
        return
    first = hostile[0]
    assert is_dns_subdomain(first.name) and len(first.name) <= 63
    assert first.extended_resource_name is None  # not an extended resource name
    assert matches(first.manifest, make_device("m", type_="mig", profile=profile))
    assert not matches(first.manifest, make_device("m", type_="mig", profile="1g"))
    assert not matches(first.manifest, make_device("m", type_="mig", profile="2g.20gb"))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=64), max_size=4))
def test_every_class_name_is_valid_and_every_claimed_name_has_one_class(
    profiles: list[str],
) -> None:
    result = generate_classes(Policy.default(), mig_profiles=profiles)
    names = [c.name for c in result.classes]
    assert len(names) == len(set(names))
    assert all(is_dns_subdomain(n) and implicit_resource_name(n) for n in names)
    claimed = Counter(c.extended_resource_name for c in result.classes if c.extended_resource_name)
    assert all(count == 1 for count in claimed.values())
    assert all(is_claimable_resource_name(name) for name in claimed)


def test_resources_that_read_alike_get_distinct_classes() -> None:
    result = generate_classes(
        policy(
            resources=[
                {"name": "nvidia.com/example.com-gpu", "deviceClassName": "gpu.example.com"},
                {"name": "example.com/gpu", "deviceClassName": "gpu.example.com"},
            ]
        )
    )
    assert len({c.name for c in result.classes}) == 2
    assert {c.resource for c in result.classes} == {
        "nvidia.com/example.com-gpu",
        "example.com/gpu",
    }


def test_servers_before_136_get_no_extended_resource_name() -> None:
    result = generate_classes(Policy.default(), extended_resource_names=False)
    assert all(c.extended_resource_name is None for c in result.classes)
    assert all("extendedResourceName" not in m["spec"] for m in result.manifests)
    assert [c.name for c in result.classes] == [
        c.name for c in generate_classes(Policy.default()).classes
    ]


def test_a_class_the_policy_names_is_copied_from_the_cluster_or_left_out() -> None:
    custom = policy(
        resources=[
            {"name": "nvidia.com/gpu", "deviceClassName": "h100.corp.io", "selector": "true"}
        ]
    )
    offline = generate_classes(custom)
    assert offline.classes == ()
    assert "h100.corp.io" in offline.notes[0] and "--cluster" in offline.notes[0]
    read = 'device.attributes["gpu.nvidia.com"].productName == "H100"'
    (made,) = generate_classes(custom, class_selectors={"h100.corp.io": [read]}).classes
    assert expressions(made.manifest) == [read, "true"]


def test_rule_selector_is_its_own_selector_entry() -> None:
    rule_selector = 'device.capacity["gpu.nvidia.com"].memory.compareTo(quantity("40Gi")) >= 0'
    result = generate_classes(
        policy(
            resources=[
                {
                    "name": "nvidia.com/gpu",
                    "deviceClassName": "gpu.nvidia.com",
                    "selector": rule_selector,
                }
            ]
        )
    )
    (gpu,) = result.classes
    assert expressions(gpu.manifest)[1:] == [rule_selector]
    assert not matches(gpu.manifest, make_device("small", memory="20Gi"))
    assert matches(gpu.manifest, make_device("big", memory="80Gi"))


def test_example_driver_classes_carry_its_own_config_dialect() -> None:
    result = generate_classes(
        policy(
            resources=[{"name": "example.com/gpu", "deviceClassName": "gpu.example.com"}],
            namespaces=[{"names": ["a"], "sharing": "TimeSlicing"}],
        )
    )
    assert [(c.name, c.extended_resource_name) for c in result.classes] == [
        ("kubectl-dra-example.com-gpu", "example.com/gpu"),
        ("kubectl-dra-example.com-gpu-timeslicing", None),
    ]
    params = result.manifests[1]["spec"]["config"][0]["opaque"]["parameters"]
    assert params["apiVersion"] == "gpu.resource.example.com/v1alpha1"
    assert expressions(result.manifests[0]) == ['device.driver == "gpu.example.com"']


@pytest.mark.parametrize("version", ["1.34", "1.36", "1.37"])
def test_generated_classes_match_the_kubernetes_schema(version: str) -> None:
    """extendedResourceName is in the DeviceClassSpec schema from 1.34 on (alpha there, behind
    the DRAExtendedResource gate), so every release we support accepts the shape."""
    result = generate_classes(Policy.default(), mig_profiles=["1g.10gb"])
    for manifest in result.manifests:
        kubernetes_validate.validate(manifest, version, strict=True)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.34", (1, 34)),
        ("v1.37.2", (1, 37)),
        ("1.36+", (1, 36)),
        ("v1.35.0-gke.100", (1, 35)),
        ("37", None),
        ("", None),
        ("latest", None),
        ("1." + "9" * 500, None),
    ],
)
def test_kubernetes_versions_are_read_as_major_minor(
    text: str, expected: tuple[int, int] | None
) -> None:
    assert parse_kubernetes_version(text) == expected


def test_extended_resource_names_are_served_from_136() -> None:
    assert not serves_extended_resource_names((1, 35))
    assert serves_extended_resource_names((1, 36))
    assert serves_extended_resource_names((2, 0))


def test_the_scheduler_path_is_reported_not_offered_before_136() -> None:
    plain = {"metadata": {"name": "gpu.nvidia.com"}, "spec": {"selectors": []}}
    claiming = {"metadata": {"name": "zz"}, "spec": {"extendedResourceName": "nvidia.com/gpu"}}
    assert scheduler_path_not_offered((1, 36), [plain]) is None
    gated_off = scheduler_path_not_offered((1, 34), [plain])
    assert gated_off is not None
    assert "not offered" in gated_off and "DRAExtendedResource" in gated_off
    assert "kube-scheduler" not in gated_off
    # A class that kept the field shows the API server has the gate on; the rest may not.
    gated_on = scheduler_path_not_offered((1, 35), [plain, claiming])
    assert gated_on is not None and "DeviceClass zz" in gated_on and "kube-scheduler" in gated_on


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("nvidia.com/gpu", True),
        ("nvidia.com/mig-1g.10gb", True),
        ("gpu", False),
        ("kubernetes.io/gpu", False),
        (IMPLICIT_PREFIX + "gpu.nvidia.com", False),
        ("nvidia.com/mig-1g.10gb+me", False),
        ("nvidia.com/" + "x" * 64, False),
    ],
)
def test_claimable_names_follow_the_api_server(name: str, ok: bool) -> None:
    assert is_claimable_resource_name(name) is ok


def test_long_or_odd_names_are_shortened_with_a_hash() -> None:
    long = class_name("kubectl-dra-" + "a" * 80)
    assert len(long) == 63 and is_dns_subdomain(long)
    assert class_name("kubectl-dra-GPU") != class_name("kubectl-dra-gpu") == "kubectl-dra-gpu"


def test_published_profiles_are_read_from_the_newest_nvidia_slices() -> None:
    slices = [
        make_slice("n1", [make_device("m0", type_="mig", profile="1g.10gb")]),
        make_slice(
            "n2",
            [
                make_device("m1", type_="mig", profile="3g.40gb"),
                make_device("m2", type_="gpu", profile="ignored"),
            ],
        ),
        make_slice("n3", [make_device("old", type_="mig", profile="7g.80gb")], generation=1),
        make_slice("n3", [make_device("new", type_="gpu")], generation=2, name="n3-new"),
        make_slice("e", [make_device("x", type_="mig", profile="2g")], driver="gpu.example.com"),
    ]
    assert published_mig_profiles(slices) == ["1g.10gb", "3g.40gb"]


def test_an_exact_rule_for_a_mig_profile_wins_over_the_wildcard() -> None:
    result = generate_classes(
        policy(
            resources=[
                {"name": "nvidia.com/mig-1g.10gb", "deviceClassName": "gpu.example.com"},
                {"name": "nvidia.com/mig-*", "deviceClassName": "mig.nvidia.com"},
            ]
        ),
        mig_profiles=["1g.10gb", "2g.20gb"],
    )
    claimed = {c.extended_resource_name: c for c in result.classes}
    assert list(claimed) == ["nvidia.com/mig-1g.10gb", "nvidia.com/mig-2g.20gb"]
    assert expressions(claimed["nvidia.com/mig-1g.10gb"].manifest) == [
        'device.driver == "gpu.example.com"'
    ]


def test_profiles_are_bounded() -> None:
    result = generate_classes(Policy.default(), mig_profiles=[f"{i}g.x" for i in range(500)])
    assert len([c for c in result.classes if "mig" in c.resource]) == 64
    assert any("more than 64 MIG profiles" in note for note in result.notes)
