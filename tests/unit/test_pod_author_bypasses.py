"""What a pod author writes cannot get a pod past the policy (the translation's rules)."""

from __future__ import annotations

from typing import Any

import pytest

from dracore.errors import TranslationError
from dracore.translate import REWRITTEN_ANNOTATION, SKIP_ANNOTATION, translate
from tests.builders import container, make_pod, make_policy

FORGED = '{"claim":"gpu","containers":[],"policy":"builtin","sharing":"Exclusive"}'


# --- the rewritten annotation proves nothing on CREATE ----------------------------------------


def test_forged_rewritten_annotation_does_not_pass_a_32_gpu_pod() -> None:
    pod = make_pod(container("app", gpus=32), annotations={REWRITTEN_ANNOTATION: FORGED})
    with pytest.raises(
        TranslationError, match="needs 32 GPU devices in all; policy maxGPUsPerPod is 2"
    ):
        translate(pod, policy=make_policy(maxGPUsPerPod=2), namespace="ml")


def test_forged_rewritten_annotation_is_replaced_by_the_real_record() -> None:
    pod = make_pod(container("app", gpus=1), annotations={REWRITTEN_ANNOTATION: "anything"})
    result = translate(pod, policy=make_policy(), namespace="ml")
    assert result.changed
    assert result.pod["spec"]["containers"][0].get("resources", {}).get("limits") is None
    record = result.pod["metadata"]["annotations"][REWRITTEN_ANNOTATION]
    assert '"count":1' in record and record != "anything"


# --- skip is a per-namespace privilege --------------------------------------------------------

SKIPPED = {SKIP_ANNOTATION: "true"}


@pytest.mark.parametrize(
    ("policy", "expect"),
    [
        # The default: skip is refused, so the pod cannot opt out of Enforce.
        (make_policy(), "deny"),
        (make_policy(allowSkip=False), "deny"),
        (make_policy(allowSkip=True), "keep"),
        # Per namespace: allowed only where the platform team allowed it.
        (make_policy(namespaces=[{"names": ["ml"], "allowSkip": True}]), "keep"),
        (make_policy(allowSkip=True, namespaces=[{"names": ["ml"], "allowSkip": False}]), "deny"),
    ],
)
def test_skip_only_where_the_policy_allows_it(policy: Any, expect: str) -> None:
    pod = make_pod(container("app", gpus=1), annotations=SKIPPED)
    if expect == "deny":
        with pytest.raises(
            TranslationError,
            match=r"kubectl-dra.io/skip is not allowed in namespace ml \(policy allowSkip: false\)",
        ):
            translate(pod, policy=policy, namespace="ml")
    else:
        result = translate(pod, policy=policy, namespace="ml")
        assert (result.changed, result.pod) == (False, pod)


def test_skip_on_a_pod_without_gpus_changes_nothing_even_where_refused() -> None:
    pod = make_pod(container("app"), annotations=SKIPPED)
    assert not translate(pod, policy=make_policy(), namespace="ml").changed


@pytest.mark.parametrize(
    ("allow", "audit_value", "warning"),
    [
        (True, "true", "audit: annotation kubectl-dra.io/skip is true"),
        (False, "refused", "audit: Enforce mode would deny this pod"),
    ],
)
def test_audit_reports_skipped_pods(allow: bool, audit_value: str, warning: str) -> None:
    pod = make_pod(container("app", gpus=1), annotations=SKIPPED)
    result = translate(pod, policy=make_policy(mode="Audit", allowSkip=allow), namespace="ml")
    assert not result.changed
    assert result.audit == {"kubectl-dra.io/skipped": audit_value}
    assert result.warnings[0].startswith(warning)


# --- the policy's limit is named first --------------------------------------------------------


def test_pod_over_both_limits_is_told_the_policy_limit() -> None:
    pod = make_pod(container("app", gpus=40))
    with pytest.raises(TranslationError) as err:
        translate(pod, policy=make_policy(maxGPUsPerPod=2), namespace="ml")
    message = str(err.value)
    assert message.startswith(
        'pod "ml/train" needs 40 GPU devices in all; policy maxGPUsPerPod is 2'
    )
    assert "DRA allocates at most 32 devices per request" in message


# --- counts: ASCII decimal integers within the API's range ------------------------------------

FIELD = 'spec.containers[0].resources.limits["nvidia.com/gpu"]'


@pytest.mark.parametrize(
    ("count", "problem"),
    [
        ("\u0663", "it must be a whole number of devices"),  # ARABIC-INDIC DIGIT THREE
        ("\uff12", "it must be a whole number of devices"),  # FULLWIDTH DIGIT TWO
        ("2.0", "it must be a whole number of devices"),
        ("9" * 20, "larger than the API server accepts"),
        ("9" * 5000, "larger than the API server accepts"),  # int() of this would raise
        (2**63, "larger than the API server accepts"),
        (10**5000, "larger than the API server accepts"),
    ],
    ids=["arabic-3", "fullwidth-2", "decimal", "20-digits", "5000-digits", "2^63", "10^5000"],
)
def test_counts_that_are_not_api_integers_are_denied_with_the_field(
    count: Any, problem: str
) -> None:
    pod = make_pod(container("app", gpus=count))
    with pytest.raises(TranslationError) as err:
        translate(pod, policy=make_policy(), namespace="ml")
    message = str(err.value)
    assert FIELD in message and problem in message
    assert len(message) < 400, "a pod author's value is cut short in the message"


def test_largest_api_integer_is_a_count_and_hits_the_limit() -> None:
    pod = make_pod(container("app", gpus=str(2**63 - 1)))
    with pytest.raises(TranslationError, match="policy maxGPUsPerPod is 16"):
        translate(pod, policy=make_policy(), namespace="ml")
