"""`kubectl dra prune` through click: the dry run, --yes, the outputs and the summary line.

The cluster side (lists, preconditions) runs against the real API server in
tests/e2e/test_prune_e2e.py; here an in-memory client records what the command asks of it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml
from click.testing import CliRunner

from kubectl_dra.cli import cli

OURS = {"app.kubernetes.io/managed-by": "kubectl-dra"}


def made(kind: str, name: str, age: timedelta) -> dict[str, Any]:
    created = (datetime.now(UTC) - age).strftime("%Y-%m-%dT%H:%M:%SZ")
    metadata = {"name": name, "namespace": "ml", "uid": "u-" + name, "resourceVersion": "3"}
    return {"kind": kind, "metadata": {**metadata, "creationTimestamp": created, "labels": OURS}}


class RecordingClient:
    def __init__(self, outcomes: dict[str, str] | None = None) -> None:
        self.templates = [
            made("ResourceClaimTemplate", "old", timedelta(hours=3)),
            made("ResourceClaimTemplate", "new", timedelta(minutes=2)),
        ]
        self.claims = [made("ResourceClaim", "team", timedelta(days=2))]
        self.outcomes = outcomes or {}
        self.calls: list[str] = []

    @property
    def default_namespace(self) -> str:
        return "ml"

    def list_labelled(
        self, kind: str, namespace: str | None, *, label_selector: str
    ) -> list[dict[str, Any]]:
        self.calls.append(f"list {kind} {namespace} {label_selector}")
        return self.templates if kind == "ResourceClaimTemplate" else self.claims

    def list_pods(
        self, namespace: str | None, *, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        self.calls.append(f"list Pod {namespace}")
        return []

    def delete_unchanged(
        self, kind: str, namespace: str, name: str, *, uid: str, resource_version: str
    ) -> str:
        self.calls.append(f"delete {kind} {namespace}/{name} {uid} {resource_version}")
        return self.outcomes.get(name, "deleted")


def run(client: RecordingClient, *args: str) -> Any:
    return CliRunner().invoke(cli, ["prune", *args], obj=client)


def test_without_yes_it_lists_and_deletes_nothing() -> None:
    client = RecordingClient()
    result = run(client)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAMESPACE", "KIND", "NAME", "AGE", "RESULT"]
    assert [line.split()[1:4] for line in lines[1:]] == [
        ["ResourceClaim", "team", "2d"],
        ["ResourceClaimTemplate", "old", "3h"],
    ]
    assert all(line.endswith("would delete") for line in lines[1:])
    assert not [c for c in client.calls if c.startswith("delete")]
    assert result.stderr.strip() == (
        "namespace ml: 2 would be deleted (run again with --yes to delete them); "
        "kept 0 in use and 1 newer than --older-than"
    )
    # Objects first, pods last, each with one list call.
    assert client.calls == [
        "list ResourceClaimTemplate ml app.kubernetes.io/managed-by=kubectl-dra",
        "list ResourceClaim ml app.kubernetes.io/managed-by=kubectl-dra",
        "list Pod ml",
    ]


def test_yes_deletes_each_on_its_uid_and_resource_version_and_reports_outcomes() -> None:
    client = RecordingClient(outcomes={"team": "changed"})
    result = run(client, "-A", "--yes", "-o", "json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["dryRun"] is False
    assert [(i["name"], i["result"]) for i in document["items"]] == [
        ("team", "changed"),
        ("old", "deleted"),
    ]
    assert [c for c in client.calls if c.startswith("delete")] == [
        "delete ResourceClaim ml/team u-team 3",
        "delete ResourceClaimTemplate ml/old u-old 3",
    ]
    assert "list Pod None" in client.calls  # -A
    assert result.stderr.startswith("all namespaces: deleted 1; 1 changed since listed and kept")


def test_the_grace_period_decides_and_yaml_is_offered() -> None:
    result = run(RecordingClient(), "--older-than", "1d", "-o", "yaml")
    assert result.exit_code == 0, result.output
    items = yaml.safe_load(result.stdout)["items"]
    assert [(i["name"], i["result"]) for i in items] == [("team", "would delete")]


def test_a_grace_period_shorter_than_the_webhooks_memory_is_a_usage_error() -> None:
    result = run(RecordingClient(), "--older-than", "4m")
    assert result.exit_code == 2
    assert "must be at least 5m" in result.stderr
