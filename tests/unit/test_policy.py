"""GPUPolicy loading: defaults, both document forms, and errors that name the field path."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from dracore.errors import PolicyError
from dracore.policy import Policy

HEADER = "apiVersion: kubectl-dra.io/v1alpha1\nkind: GPUPolicy\n"


def load(spec: str) -> Policy:
    return Policy.from_yaml(HEADER + "spec:\n" + textwrap.indent(textwrap.dedent(spec), "  "))


def problems(spec: str) -> list[str]:
    with pytest.raises(PolicyError) as err:
        load(spec)
    return err.value.problems


def test_builtin_default() -> None:
    policy = Policy.default()
    assert policy.mode == "Enforce"
    assert policy.exempt_namespaces == frozenset({"kube-system"})
    rules = policy.rules_for("any")
    assert (
        rules.sharing,
        rules.pod_sharing,
        rules.shared_claims,
        rules.max_gpus_per_pod,
        rules.node_selectors,
    ) == (
        "Exclusive",
        "Disabled",
        "Disabled",
        16,
        "Translate",
    )
    gpu, _ = policy.resource_rule("nvidia.com/gpu") or (None, "")
    assert gpu is not None and gpu.device_class_name == "gpu.nvidia.com"
    shared, _ = policy.resource_rule("nvidia.com/gpu.shared") or (None, "")
    assert shared is not None and shared.sharing == "TimeSlicing"
    mig, profile = policy.resource_rule("nvidia.com/mig-1g.10gb") or (None, "")
    assert mig is not None and (mig.device_class_name, profile) == ("mig.nvidia.com", "1g.10gb")
    assert policy.resource_rule("nvidia.com/gpumem") is None


def test_issue_example_policy_loads() -> None:
    policy = load(
        """
        mode: Enforce
        resources:
        - {name: nvidia.com/gpu, deviceClassName: gpu.nvidia.com}
        - {name: nvidia.com/mig-1g.5gb, deviceClassName: mig.nvidia.com, selector: 'device.attributes["gpu.nvidia.com"].profile == "1g.5gb"'}
        defaults:
          sharing: Exclusive
          timeSlicing: {interval: Default}
          mps: {defaultActiveThreadPercentage: 50}
          podSharing: Disabled
          sharedClaims: Disabled
          maxGPUsPerPod: 16
          nodeSelectors: Translate
        namespaces:
        - {names: [ml-research], labels: {gpu-sharing: enabled}, sharing: TimeSlicing}
        exemptNamespaces: [kube-system]
        """
    )
    assert policy.rules_for("ml-research").sharing == "TimeSlicing"
    assert policy.rules_for("x", {"gpu-sharing": "enabled"}).sharing == "TimeSlicing"
    assert policy.rules_for("x", {"gpu-sharing": "no"}).sharing == "Exclusive"
    assert policy.needs_namespace_labels


def test_namespace_rule_inherits_unset_keys_from_defaults() -> None:
    policy = load(
        """
        defaults: {maxGPUsPerPod: 4, mps: {defaultActiveThreadPercentage: 30}}
        namespaces: [{names: [a], sharing: MPS, mps: {defaultPinnedDeviceMemoryLimit: 8Gi}}]
        """
    )
    rules = policy.rules_for("a")
    assert (rules.sharing, rules.max_gpus_per_pod) == ("MPS", 4)
    assert (
        rules.mps.default_active_thread_percentage,
        rules.mps.default_pinned_device_memory_limit,
    ) == (30, "8Gi")


def test_configmap_and_file_forms(tmp_path: Path) -> None:
    body = HEADER + "spec: {defaults: {sharing: MPS}}\n"
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "p"},
        "data": {"policy.yaml": body},
    }
    assert Policy.from_mapping(configmap).defaults.sharing == "MPS"
    path = tmp_path / "policy.yaml"
    path.write_text(body)
    assert Policy.from_file(path).defaults.sharing == "MPS"
    assert Policy.from_file(path).digest == Policy.from_yaml(body).digest != "builtin"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            "defaults: {sharing: Timeslicing}",
            'spec.defaults.sharing: "Timeslicing" is not one of Exclusive, TimeSlicing, MPS',
        ),
        ("mode: enforce", 'spec.mode: "enforce" is not one of Enforce, Audit, Disabled'),
        (
            "defaults: {podSharing: Yes}",
            "spec.defaults.podSharing: true is not one of Disabled, Allowed, Always",
        ),
        (
            "defaults: {timeSlicing: {interval: Fast}}",
            'spec.defaults.timeSlicing.interval: "Fast" is not one of Default, Short, Medium, Long',
        ),
        (
            "defaults: {maxGPUsPerPod: 64}",
            "spec.defaults.maxGPUsPerPod: 64 must be a whole number from 0 to 32",
        ),
        (
            "defaults: {mps: {defaultActiveThreadPercentage: 150}}",
            "spec.defaults.mps.defaultActiveThreadPercentage: 150 must be a whole number from 0 to 100",
        ),
        (
            "defaults: {mps: {defaultPinnedDeviceMemoryLimit: lots}}",
            'spec.defaults.mps.defaultPinnedDeviceMemoryLimit: "lots" must be a quantity',
        ),
        ("defaults: {shareing: MPS}", "spec.defaults.shareing: unknown field (allowed: sharing,"),
        ("color: blue", "spec.color: unknown field"),
        (
            "resources: [{name: gpu, deviceClassName: gpu.nvidia.com}]",
            'spec.resources[0].name: "gpu" is not an extended resource name',
        ),
        (
            "resources: [{name: nvidia.com/gpu, deviceClassName: GPU}]",
            'spec.resources[0].deviceClassName: "GPU" is not a valid DeviceClass name',
        ),
        (
            "resources: [{name: nvidia.com/gpu, deviceClassName: a.b, sharing: MPS}]",
            "spec.resources[0].deviceClassName: 'a.b' belongs to no driver whose sharing config is known",
        ),
        (
            "resources: [{name: nvidia.com/gpu, deviceClassName: gpu.example.com}]\ndefaults: {sharing: MPS}",
            "the gpu.example.com driver offers TimeSlicing, not MPS",
        ),
        ("namespaces: [{sharing: MPS}]", "spec.namespaces[0]: needs names or labels"),
        (
            "namespaces: [{names: [ml], sharing: Fast}]",
            'spec.namespaces[0].sharing: "Fast" is not one of',
        ),
        ("exemptNamespaces: kube-system", "spec.exemptNamespaces: must be a list"),
    ],
)
def test_errors_name_the_field_and_the_allowed_values(spec: str, expected: str) -> None:
    found = problems(spec)
    assert any(p.startswith(expected) or expected in p for p in found), found


def test_every_problem_is_reported_at_once() -> None:
    assert len(problems("mode: x\ndefaults: {sharing: y, podSharing: z}")) == 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "empty document"),
        ("spec: [", "not valid YAML at line"),
        (
            "apiVersion: v1\nkind: GPUPolicy\nspec: {}",
            'apiVersion: "v1" must be kubectl-dra.io/v1alpha1',
        ),
        ("- a\n- b", "(top level): must be a mapping"),
    ],
)
def test_documents_that_are_not_policies(text: str, expected: str) -> None:
    with pytest.raises(PolicyError) as err:
        Policy.from_yaml(text)
    assert any(expected in p for p in err.value.problems), err.value.problems


def test_configmap_without_policy_key() -> None:
    with pytest.raises(PolicyError, match=r"data.policy.yaml: missing"):
        Policy.from_mapping({"kind": "ConfigMap", "metadata": {"name": "x"}, "data": {}})


def test_unreadable_file_is_a_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read"):
        Policy.from_file(tmp_path / "missing.yaml")


# --- selectors parsed at load; every bad input is a PolicyError -------------------------------


@pytest.mark.parametrize(
    ("selector", "problem"),
    [
        ('device.attributes["gpu.nvidia.com"].productName ==', "line 1, column"),
        ("a &&\n (b", "line 2, column"),
        ("device.capacity['x'].memory > 9223372036854775808", "does not fit in 64 bits (int64)"),
        ('device.attributes["x"].y == "\\ud800"', "lone UTF-16 surrogate"),
    ],
    ids=["truncated", "unclosed", "int64", "surrogate"],
)
def test_selector_that_cel_refuses_is_reported_at_load(selector: str, problem: str) -> None:
    document = {
        "apiVersion": "kubectl-dra.io/v1alpha1",
        "kind": "GPUPolicy",
        "spec": {
            "resources": [
                {
                    "name": "nvidia.com/gpu",
                    "deviceClassName": "gpu.nvidia.com",
                    "selector": selector,
                }
            ]
        },
    }
    with pytest.raises(PolicyError) as err:
        Policy.from_mapping(document)
    (found,) = err.value.problems
    assert found.startswith("spec.resources[0].selector: not a valid CEL expression: ")
    assert problem in found


def test_valid_selector_loads() -> None:
    policy = load(
        "resources:\n- name: nvidia.com/gpu\n  deviceClassName: gpu.nvidia.com\n"
        '  selector: device.attributes["gpu.nvidia.com"].productName == "H100" && 1 < 9223372036854775807\n'
    )
    assert policy.resources[0].selector is not None


def test_allow_skip_must_be_a_boolean() -> None:
    assert problems("defaults:\n  allowSkip: 'yes'\n") == [
        'spec.defaults.allowSkip: "yes" must be true or false'
    ]
    assert load("defaults:\n  allowSkip: true\n").rules_for("x").allow_skip is True
    assert Policy.default().rules_for("x").allow_skip is False


def _nested(depth: int) -> object:
    value: object = "x"
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    "document",
    [
        {
            "apiVersion": "kubectl-dra.io/v1alpha1",
            "kind": "GPUPolicy",
            "spec": {"defaults": _nested(5000)},
        },
        {"apiVersion": "kubectl-dra.io/v1alpha1", "kind": "GPUPolicy", "spec": {"mode": 10**5000}},
        {
            "apiVersion": "kubectl-dra.io/v1alpha1",
            "kind": "GPUPolicy",
            "spec": {1: "x", "mode": "Enforce"},
        },
        {
            "apiVersion": "kubectl-dra.io/v1alpha1",
            "kind": "GPUPolicy",
            "spec": {"exemptNamespaces": [["a"]]},
        },
        {"apiVersion": ["x"], "kind": {"a": 1}, "spec": []},
        {"kind": "ConfigMap", "metadata": ["x"], "data": {"policy.yaml": 10**5000}},
        {"kind": "ConfigMap", "metadata": {"name": "p"}, "data": {"policy.yaml": ["x"]}},
        [1, 2],
        "text",
    ],
    ids=[
        "deep",
        "huge-int",
        "int-key",
        "list-name",
        "wrong-shapes",
        "configmap-huge",
        "configmap-list",
        "list",
        "text",
    ],
)
def test_any_bad_document_raises_only_policy_error(document: object) -> None:
    with pytest.raises(PolicyError) as err:
        Policy.from_mapping(document)
    assert err.value.problems
    assert len(str(err.value)) < 2000


def test_non_utf8_policy_file_is_a_policy_error(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_bytes(b"spec:\n  mode: \xff\xfe\n")
    with pytest.raises(PolicyError, match="not UTF-8"):
        Policy.from_file(path)


@pytest.mark.parametrize(
    "text",
    [
        HEADER + "spec:\n  mode: " + "9" * 5000 + "\n",
        HEADER + "spec:\n  defaults: " + "[" * 5000 + "]" * 5000,
        HEADER + "spec: {? [a, b] : c}",
        HEADER + "spec:\n  mode: 2001-01-01\n",
        HEADER + "spec:\n  defaults:\n    maxGPUsPerPod: .nan\n",
        "\x00",
    ],
    ids=["huge-int", "deep", "unhashable-key", "date", "nan", "control-char"],
)
def test_any_bad_policy_text_raises_only_policy_error(text: str) -> None:
    """What a hot reload reports: it catches PolicyError, so nothing else may escape."""
    with pytest.raises(PolicyError) as err:
        Policy.from_yaml(text)
    assert err.value.problems and "\n" not in err.value.problems[0]


def test_resources_the_shipped_registration_never_sends_are_warned_about() -> None:
    policy = Policy.from_mapping(
        {
            "apiVersion": "kubectl-dra.io/v1alpha1",
            "kind": "GPUPolicy",
            "spec": {
                "resources": [
                    {"name": "nvidia.com/gpu", "deviceClassName": "gpu.nvidia.com"},
                    {"name": "example.com/*", "deviceClassName": "gpu.example.com"},
                ]
            },
        }
    )
    assert policy.warnings == (
        "spec.resources[1].name: the registration shipped in manifests/ sends only pods asking "
        "for the built-in policy's resources, so pods asking for example.com/* reach the webhook "
        "only once the registration is made from this policy (`kubectl dra registration "
        "--policy FILE`; the Helm chart makes it from values.policy)",
    )
    assert Policy.default().warnings == ()
