"""Whatever an API server answers, the plugin ends in one clear line, never a traceback.

A scripted HTTP server on 127.0.0.1 plays the API server: every list is empty and discovery
serves resource.k8s.io/v1, except the one answer each case breaks. The real CLI reaches it
through a kubeconfig, as a user's kubectl would.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from click.testing import CliRunner

from kubectl_dra.cli import cli

DISCOVERY = {
    "kind": "APIGroupList",
    "apiVersion": "v1",
    "groups": [{"name": "resource.k8s.io", "versions": [{"version": "v1"}]}],
}
LIST_PATHS = {
    "pods",
    "nodes",
    "namespaces",
    "resourceslices",
    "resourceclaims",
    "resourceclaimtemplates",
    "deviceclasses",
    "deployments",
    "statefulsets",
    "daemonsets",
    "replicasets",
    "replicationcontrollers",
    "jobs",
    "cronjobs",
    "mutatingwebhookconfigurations",
}
NOT_FOUND = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404}
POD = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: a}]}\n"


class ScriptedApiServer:
    """Answers GETs from a table: path -> (status, content type, body)."""

    def __init__(self) -> None:
        self.answers: dict[str, tuple[int, str, bytes]] = {}
        self.seen: list[str] = []
        script = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = urlparse(self.path).path.rstrip("/") or "/"
                script.seen.append(path)
                status, content_type, body = script.answer(path)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def answer(self, path: str) -> tuple[int, str, bytes]:
        if path in self.answers:
            return self.answers[path]
        if path == "/apis":
            return 200, "application/json", json.dumps(DISCOVERY).encode()
        if path.rsplit("/", 1)[-1] in LIST_PATHS:
            return 200, "application/json", b'{"kind": "List", "apiVersion": "v1", "items": []}'
        return 404, "application/json", json.dumps(NOT_FOUND).encode()

    def kubeconfig(self, directory: Path) -> Path:
        host, port = self.server.server_address[:2]
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "c", "cluster": {"server": f"http://{host}:{port}"}}],
            "users": [{"name": "u", "user": {"token": "t"}}],
            "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "x",
        }
        path = directory / "kubeconfig"
        path.write_text(json.dumps(config))
        return path


@pytest.fixture
def api() -> Iterator[ScriptedApiServer]:
    server = ScriptedApiServer()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


@dataclass(frozen=True)
class Case:
    id: str
    path: str
    body: bytes
    command: str  # describe | describe-pods | audit | validate
    message: str
    status: int = 200
    content_type: str = "application/json"


def items(*values: Any) -> bytes:
    return json.dumps({"kind": "List", "items": list(values)}).encode()


SLICES = "/apis/resource.k8s.io/v1/resourceslices"
CLAIMS = "/apis/resource.k8s.io/v1/resourceclaims"
CASES = [
    Case(
        "html-discovery",
        "/apis",
        b"<!DOCTYPE html><html><body>Sign in</body></html>",
        "describe",
        "cannot discover API groups: the API server's answer is not JSON but an HTML page",
        content_type="text/html",
    ),
    Case(
        "discovery-groups-null",
        "/apis",
        b'{"kind": "APIGroupList", "groups": null}',
        "describe",
        "the DRA API (resource.k8s.io) is not served by this cluster",
    ),
    Case(
        "discovery-groups-object",
        "/apis",
        b'{"groups": {"name": "resource.k8s.io"}}',
        "validate",
        "cannot discover API groups: the answer's groups is an object, not a list",
    ),
    Case(
        "discovery-versions-string",
        "/apis",
        b'{"groups": [{"name": "resource.k8s.io", "versions": "v1"}]}',
        "audit",
        "cannot discover API groups: groups[0].versions is a string, not a list",
    ),
    Case(
        "item-not-object",
        SLICES,
        items(5),
        "describe",
        "cannot list resourceslices: items[0] is a number, not an object",
    ),
    Case(
        "items-string",
        CLAIMS,
        b'{"items": "none"}',
        "validate",
        "cannot list resourceclaims: the answer's items is a string, not a list",
    ),
    Case(
        "answer-is-a-list",
        "/api/v1/pods",
        b"[]",
        "describe-pods",
        "cannot list pods: the answer is a list, not a list object",
    ),
    Case(
        "metadata-null",
        "/api/v1/nodes",
        items({"metadata": None}),
        "audit",
        "cannot list nodes: items[0].metadata is null, not an object",
    ),
    Case(
        "labels-not-strings",
        "/api/v1/namespaces",
        items({"metadata": {"name": "a", "labels": {"x": 1}}}),
        "audit",
        "cannot list namespaces: items[0].metadata.labels is not a map of strings",
    ),
    Case(
        "name-not-string",
        "/apis/resource.k8s.io/v1/deviceclasses",
        items({"metadata": {"name": ["gpu"]}}),
        "validate",
        "cannot list deviceclasses: items[0].metadata.name is not a string",
    ),
    Case(
        "spec-not-object",
        "/apis/apps/v1/deployments",
        items({"metadata": {"name": "d"}, "spec": "big"}),
        "audit",
        "cannot list deployments: items[0].spec is a string, not an object",
    ),
    Case(
        "nested-too-deep",
        CLAIMS,
        b'{"items": ' + b"[" * 5_000 + b"]" * 5_000 + b"}",
        "describe",
        "cannot list resourceclaims: the API server's answer is nested too deep",
    ),
    Case(
        "nested-past-our-bound",
        CLAIMS,
        b'{"items": [{"metadata": {}, "spec": ' + b'{"a": ' * 200 + b"1" + b"}" * 200 + b"}]}",
        "describe",
        "cannot list resourceclaims: the API server's answer is nested more than 100 levels",
    ),
    Case(
        "truncated-json",
        SLICES,
        b'{"items": [{"metadata": ',
        "validate",
        "cannot list resourceslices: the API server's answer is not JSON (",
    ),
]


def _args(case: Case, kubeconfig: Path, tmp_path: Path) -> list[str]:
    pod = tmp_path / "pod.yaml"
    pod.write_text(POD)
    return {
        "describe": ["describe"],
        "describe-pods": ["describe", "pods", "-A"],
        "audit": ["audit", "-A"],
        "validate": ["validate", "-f", str(pod), "--cluster"],
    }[case.command] + ["--kubeconfig", str(kubeconfig)]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_malformed_answer_is_one_error_line(
    case: Case, api: ScriptedApiServer, tmp_path: Path
) -> None:
    api.answers[case.path] = (case.status, case.content_type, case.body)
    kubeconfig = api.kubeconfig(tmp_path)
    result = CliRunner().invoke(cli, _args(case, kubeconfig, tmp_path), prog_name="kubectl dra")
    assert case.path in api.seen, "the command never asked for the broken answer"
    assert "Traceback" not in result.stderr
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if not line.startswith("Warning: ")]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert case.message in lines[0]


@pytest.mark.parametrize("command", ["describe", "describe-pods", "audit", "validate"])
def test_items_null_is_an_empty_list(command: str, api: ScriptedApiServer, tmp_path: Path) -> None:
    """Go writes an empty slice as null; a list answer with `items: null` lists nothing."""
    for plural in LIST_PATHS:
        for prefix in ("/api/v1/", "/apis/resource.k8s.io/v1/"):
            api.answers[prefix + plural] = (200, "application/json", b'{"items": null}')
    case = Case("null", "", b"", command, "")
    result = CliRunner().invoke(cli, _args(case, api.kubeconfig(tmp_path), tmp_path))
    assert "Traceback" not in result.stderr
    assert result.exit_code == 0, result.output


def minimal(kind: str) -> dict[str, Any]:
    return {"kind": kind, "metadata": {"name": "m", "namespace": "ml"}}


@pytest.mark.parametrize("command", ["describe", "describe-pods", "audit", "validate"])
def test_objects_with_only_metadata_do_not_crash_a_command(
    command: str, api: ScriptedApiServer, tmp_path: Path
) -> None:
    """Every optional field left out: the commands read what is there and go on."""
    for plural in LIST_PATHS:
        body = items(minimal(plural))
        for prefix in (
            "/api/v1/",
            "/apis/resource.k8s.io/v1/",
            "/apis/apps/v1/",
            "/apis/batch/v1/",
        ):
            api.answers[prefix + plural] = (200, "application/json", body)
    api.answers["/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"] = (
        200,
        "application/json",
        items({"metadata": {"name": "w"}, "webhooks": [{}]}),
    )
    case = Case("minimal", "", b"", command, "")
    result = CliRunner().invoke(cli, _args(case, api.kubeconfig(tmp_path), tmp_path))
    assert "Traceback" not in result.stderr
    assert result.exit_code in (0, 1), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
