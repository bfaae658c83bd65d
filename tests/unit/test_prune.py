"""Which objects the webhook made `kubectl dra prune` finds left over (kubectl_dra.prune)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kubectl_dra.prune import (
    MIN_GRACE,
    Leftover,
    format_age,
    parse_duration,
    plan_prune,
)

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
GRACE = timedelta(hours=1)
OURS = {"app.kubernetes.io/managed-by": "kubectl-dra"}


def made(
    kind: str, name: str, *, age: timedelta = timedelta(hours=2), **extra: Any
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": extra.pop("namespace", "ml"),
        "uid": f"uid-{name}",
        "resourceVersion": "7",
        "creationTimestamp": (NOW - age).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "labels": extra.pop("labels", OURS),
        **extra.pop("metadata", {}),
    }
    return {"kind": kind, "metadata": metadata, **extra}


def template(name: str, **extra: Any) -> dict[str, Any]:
    return made("ResourceClaimTemplate", name, **extra)


def claim(name: str, **extra: Any) -> dict[str, Any]:
    return made("ResourceClaim", name, **extra)


def pod(namespace: str = "ml", **reference: str) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "namespace": namespace},
        "spec": {"resourceClaims": [{"name": "gpu", **reference}]},
    }


def names(**objects: Any) -> list[str]:
    plan = plan_prune(
        now=NOW, grace=GRACE, **{"templates": [], "claims": [], "pods": [], **objects}
    )
    return [o.name for o in plan.leftovers]


def test_an_unreferenced_old_template_is_left_over_with_what_its_deletion_needs() -> None:
    plan = plan_prune(templates=[template("t")], claims=[], pods=[], now=NOW, grace=GRACE)
    assert plan.leftovers == (
        Leftover("ResourceClaimTemplate", "ml", "t", "uid-t", "7", timedelta(hours=2)),
    )
    assert plan.leftovers[0].plural == "resourceclaimtemplates"


def test_a_template_a_pod_references_is_kept_only_in_that_pods_namespace() -> None:
    assert names(templates=[template("t")], pods=[pod(resourceClaimTemplateName="t")]) == []
    other = pod("other", resourceClaimTemplateName="t")
    assert names(templates=[template("t")], pods=[other]) == ["t"]


def test_a_shared_claim_is_kept_while_referenced_or_held() -> None:
    assert names(claims=[claim("c")], pods=[pod(resourceClaimName="c")]) == []
    held = claim("c", status={"reservedFor": [{"resource": "pods", "name": "x", "uid": "u"}]})
    assert names(claims=[held]) == []
    assert names(claims=[claim("c", status={"reservedFor": []})]) == ["c"]


def test_a_claim_generated_for_a_pod_is_left_to_the_garbage_collector() -> None:
    owned = claim("p-gpu-x", metadata={"ownerReferences": [{"kind": "Pod", "name": "p"}]})
    assert names(claims=[owned]) == []


@pytest.mark.parametrize(
    "obj",
    [
        template("young", age=timedelta(minutes=59)),
        template("foreign", labels={"app.kubernetes.io/managed-by": "helm"}),
        template("unlabelled", labels=None),
        template("leaving", metadata={"deletionTimestamp": "2026-12-03T11:00:00Z"}),
        template("no-time", metadata={"creationTimestamp": "yesterday"}),
        template("odd-time", metadata={"creationTimestamp": 5}),
    ],
    ids=lambda o: o["metadata"]["name"],
)
def test_what_is_not_ours_new_or_unreadable_is_kept(obj: dict[str, Any]) -> None:
    assert names(templates=[obj]) == []


def test_counts_say_why_the_rest_was_kept() -> None:
    plan = plan_prune(
        templates=[template("used"), template("new", age=timedelta(minutes=1)), template("old")],
        claims=[claim("c")],
        pods=[pod(resourceClaimTemplateName="used"), {"metadata": None, "spec": 5}],
        now=NOW,
        grace=GRACE,
    )
    assert [o.name for o in plan.leftovers] == ["c", "old"]  # by namespace, kind, name
    assert (plan.in_use, plan.too_new) == (1, 1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1h", timedelta(hours=1)),
        ("90m", timedelta(minutes=90)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("2d", timedelta(days=2)),
        ("300s", MIN_GRACE),
    ],
)
def test_durations_read_as_kubectl_writes_them(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "1y", "h", "1.5h", "-1h", "9" * 5000 + "h", "1m1h"])
def test_other_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


def test_ages_read_like_kubectl() -> None:
    assert [format_age(timedelta(seconds=s)) for s in (5, 120, 7200, 3 * 86400)] == [
        "5s",
        "2m",
        "2h",
        "3d",
    ]
