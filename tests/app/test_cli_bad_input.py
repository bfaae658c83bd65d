"""Bad input to every command ends in one line naming the file and the problem, never a traceback.

Each case writes one file, runs one command on it, and expects exit code 1 (2 for usage) and a
single `Error: ...` line on stderr that names the file and contains the needle. With --debug the
same input shows the traceback instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from kubectl_dra.cli import cli

GOOD_POD = (
    "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n"
    "spec: {containers: [{name: a, image: b, resources: {limits: {nvidia.com/gpu: 1}}}]}\n"
)
# Each level repeats the one before nine times: 9**6 = 531,441 nodes from a few hundred bytes.
ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n" for a, b in zip("abcde", "bcdef", strict=True)
)


def pod(spec: str, *, kind: str = "Pod", api: str = "v1") -> str:
    return f"apiVersion: {api}\nkind: {kind}\nmetadata: {{name: p}}\nspec: {spec}\n"


@dataclass(frozen=True)
class Case:
    id: str
    command: str  # convert | validate | convert-policy | describe-kubeconfig | validate-kubeconfig
    content: bytes | str | None  # None: the path does not exist
    needle: str


CASES = [
    Case("non-utf8-manifest", "convert", b"kind: Pod\nmetadata: {name: caf\xe9}\n", "not UTF-8"),
    Case("non-utf8-manifest-validate", "validate", b"kind: Pod\nx: \xff\n", "not UTF-8"),
    Case("deep-json", "validate", "[" * 50_000 + "]" * 50_000, "nested more than 100"),
    Case("deep-yaml", "convert", "a: " + "[" * 5_000 + "]" * 5_000, "not valid YAML"),
    Case(
        "huge-int-json",
        "convert",
        '{"kind": "Pod", "metadata": {"name": "x"}, "spec": {"n": ' + "9" * 5_000 + "}}",
        "5,000 digits",
    ),
    Case("huge-int-yaml", "validate", "kind: Pod\nn: " + "9" * 5_000 + "\n", "cannot be read"),
    Case("nan-json", "validate", '{"kind": "Pod", "n": NaN}', "NaN is not a JSON value"),
    Case("self-alias", "convert", "a: &a [*a]\n", "refers to a node that contains it"),
    Case("alias-bomb", "validate", ALIAS_BOMB, "aliases expand the document"),
    Case("scalar-document", "convert", "hello\n", "document 1: not a Kubernetes object"),
    Case(
        "no-kind-second-document",
        "validate",
        "kind: ConfigMap\nmetadata: {name: a}\n---\nmetadata: {name: lost}\n",
        'document 2 ("lost"): not a Kubernetes object (no kind)',
    ),
    Case("metadata-list", "convert", "kind: Pod\nmetadata: []\n", "metadata must be a mapping"),
    Case("list-items-int", "validate", "kind: List\nitems: 5\n", "items must be a list"),
    Case("pod-spec-int", "convert", pod("5"), 'Pod "p"): spec must be a mapping, not an int'),
    Case("containers-int", "convert", pod("{containers: 5}"), "spec.containers must be a list"),
    Case(
        "limits-int",
        "convert",
        pod("{containers: [{name: a, resources: {limits: 7}}]}"),
        "spec.containers[0].resources.limits must be a mapping",
    ),
    Case(
        "deployment-template-list",
        "convert",
        pod("{template: [1, 2]}", kind="Deployment", api="apps/v1"),
        "spec.template must be a mapping, not a list",
    ),
    Case(
        "limits-int-key",
        "convert",
        pod("{containers: [{name: a, resources: {limits: {1: 2, nvidia.com/gpu: 1}}}]}"),
        "document 1: Pod \"p\": spec.containers[0].resources.limits: key '1' at line 4, "
        'column 52 is an int, not a string; quote it ("1")',
    ),
    Case(
        "bool-label-key-second-document",
        "validate",
        "kind: ConfigMap\nmetadata: {name: a}\n---\n"
        + pod("{}").replace("{name: p}", "{name: p, labels: {yes: x}}"),
        "document 2: Pod \"p\": metadata.labels: key 'yes' at line 6, column 30 is a bool",
    ),
    Case(
        "null-key",
        "validate",
        "kind: Pod\nmetadata: {~: x}\n",
        "key '~' at line 2, column 12 is a null",
    ),
    Case(
        "policy-int-key", "convert-policy", "spec:\n  defaults: {1: 2}\n", "spec.defaults: key '1'"
    ),
    Case(
        "kubeconfig-int-key", "describe-kubeconfig", "contexts: [{1: a}]\n", "contexts[0]: key '1'"
    ),
    Case("directory", "validate", "DIR", "cannot read"),
    Case("missing-manifest", "convert", None, "cannot read: No such file"),
    Case("policy-non-utf8", "convert-policy", b"spec: \xff\n", "not UTF-8"),
    Case("policy-list", "convert-policy", "- 1\n", "must be a mapping, not a list"),
    Case("policy-bad-yaml", "convert-policy", "spec: [unclosed\n", "not valid YAML"),
    Case("policy-alias-bomb", "convert-policy", ALIAS_BOMB, "aliases expand the document"),
    Case("kubeconfig-garbage", "describe-kubeconfig", "a: [unclosed\n", "not valid YAML"),
    Case("kubeconfig-non-utf8", "describe-kubeconfig", b"clusters: \xff\n", "not UTF-8"),
    Case("kubeconfig-list", "validate-kubeconfig", "- 1\n", "a kubeconfig is a mapping"),
    Case("kubeconfig-alias-bomb", "describe-kubeconfig", ALIAS_BOMB, "aliases expand"),
    Case("kubeconfig-missing", "describe-kubeconfig", None, "kubeconfig not found"),
    Case(
        "kubeconfig-wrong-shape",
        "describe-kubeconfig",
        "apiVersion: v1\nkind: Config\ncurrent-context: a\ncontexts: 5\nclusters: 5\nusers: 5\n",
        "kubeconfig",
    ),
]


def _args(case: Case, path: Path, tmp_path: Path) -> list[str]:
    good = tmp_path / "good.yaml"
    good.write_text(GOOD_POD)
    return {
        "convert": ["convert", "-f", str(path)],
        "validate": ["validate", "-f", str(path)],
        "convert-policy": ["convert", "-f", str(good), "--policy", str(path)],
        "describe-kubeconfig": ["describe", "--kubeconfig", str(path)],
        "validate-kubeconfig": [
            "validate",
            "-f",
            str(good),
            "--cluster",
            "--kubeconfig",
            str(path),
        ],
    }[case.command]


def _write(case: Case, tmp_path: Path) -> Path:
    path = tmp_path / f"{case.id}.yaml"
    if case.content == "DIR":
        path.mkdir()
    elif isinstance(case.content, bytes):
        path.write_bytes(case.content)
    elif case.content is not None:
        path.write_text(case.content)
    return path


def test_the_table_covers_every_command_and_enough_inputs() -> None:
    assert len(CASES) >= 19
    commands = {c.command.split("-")[0] for c in CASES}
    assert commands == {"convert", "validate", "describe"}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_naming_the_file(case: Case, tmp_path: Path) -> None:
    path = _write(case, tmp_path)
    result = CliRunner().invoke(cli, _args(case, path, tmp_path), prog_name="kubectl dra")
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    assert path.name in lines[0]
    assert case.needle in lines[0]
    assert result.stdout == ""


@pytest.mark.parametrize("case", [c for c in CASES if c.id in ("pod-spec-int", "nan-json")])
def test_debug_shows_the_traceback_instead(case: Case, tmp_path: Path) -> None:
    path = _write(case, tmp_path)
    result = CliRunner().invoke(cli, ["--debug", *_args(case, path, tmp_path)])
    assert result.exit_code == 1
    assert result.exception is not None and not isinstance(result.exception, SystemExit)
