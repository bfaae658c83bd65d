"""The single-file plugin (dist/kubectl-dra, `make plugin`) through the real kubectl.

kubectl finds plugins as executables named `kubectl-<name>` on PATH: the built file is put on
PATH under that name, then `kubectl plugin list` must list it and `kubectl dra ...` must run it,
against the local control plane too. The file must not carry the webhook's server stack, and
the krew manifest must describe the archive `make plugin` built.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
import yaml

from hack import build_plugin, k8s_build
from tests.e2e.e2e_support import ROOT, E2ECluster

pytestmark = pytest.mark.e2e

BUILT = ROOT / "dist" / "kubectl-dra"


@pytest.fixture(scope="module")
def on_path(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    if not BUILT.exists():
        pytest.fail(f"{BUILT} is missing: run `make dist/kubectl-dra` (hack/build_plugin.py) first")
    bin_dir = tmp_path_factory.mktemp("plugin-bin")
    shutil.copy2(BUILT, bin_dir / "kubectl-dra")
    kubectl = k8s_build.bin_dir() / "kubectl"
    # Only our kubectl, the plugin and the system's python3: nothing from the venv.
    path = os.pathsep.join(
        [str(bin_dir), str(kubectl.parent), "/usr/local/bin", "/usr/bin", "/bin"]
    )
    return {**os.environ, "PATH": path, "HOME": str(tmp_path_factory.mktemp("home"))}


def kubectl(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["kubectl", *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )


def test_the_file_is_a_zipapp_without_the_server_stack() -> None:
    assert BUILT.read_bytes().startswith(b"#!/usr/bin/env python3\n")
    names = zipfile.ZipFile(BUILT).namelist()
    wheels = {n.split("/")[1].lower() for n in names if n.startswith(".deps/")}
    assert any(w.startswith("kubernetes-") for w in wheels) and any(
        w.startswith("click-") for w in wheels
    )
    assert not [w for w in wheels if w.startswith(build_plugin.SERVER_STACK)]


def test_kubectl_discovers_and_runs_it(on_path: dict[str, str]) -> None:
    listed = kubectl(on_path, "plugin", "list")
    assert listed.returncode == 0, listed.stderr
    assert "kubectl-dra" in listed.stdout
    helped = kubectl(on_path, "dra", "--help")
    assert helped.returncode == 0, helped.stderr
    assert "Usage: kubectl dra" in helped.stdout
    for command in ("audit", "convert", "describe", "validate"):
        assert f"  {command} " in helped.stdout


def test_it_audits_the_cluster_through_kubectl(k8s: E2ECluster, on_path: dict[str, str]) -> None:
    proc = kubectl(on_path, "dra", "audit", "-A", "-o", "json", "--kubeconfig", str(k8s.kubeconfig))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["kind"] == "AuditReport"
    assert {c["driver"] for c in doc["capacity"]} >= {"gpu.nvidia.com", "gpu.example.com"}


def test_the_krew_manifest_describes_the_built_archive(tmp_path: Path) -> None:
    tarball = build_plugin.archive(BUILT, tmp_path)
    (tmp_path / "again").mkdir()
    again = build_plugin.archive(BUILT, tmp_path / "again")
    assert tarball.read_bytes() == again.read_bytes()  # reproducible: the sha256 is meaningful
    manifest = tmp_path / "dra.yaml"
    shutil.copy2(ROOT / "plugins" / "dra.yaml", manifest)
    build_plugin.update_manifest(manifest, hashlib.sha256(tarball.read_bytes()).hexdigest())
    doc = yaml.safe_load(manifest.read_text())
    assert (doc["kind"], doc["metadata"]["name"]) == ("Plugin", "dra")
    assert {
        (p["selector"]["matchLabels"]["os"], p["selector"]["matchLabels"]["arch"])
        for p in doc["spec"]["platforms"]
    } == {("linux", "amd64"), ("linux", "arm64"), ("darwin", "arm64")}
    for platform in doc["spec"]["platforms"]:
        assert platform["sha256"] == hashlib.sha256(tarball.read_bytes()).hexdigest()
        assert (platform["bin"], platform["files"]) == (
            "kubectl-dra",
            [{"from": "kubectl-dra", "to": "."}],
        )


def test_kubectl_completes_the_plugin_through_kubectl_complete_dra(on_path: dict[str, str]) -> None:
    # What README tells single-file users to install next to the plugin.
    bin_dir = Path(on_path["PATH"].split(os.pathsep)[0])
    script = bin_dir / "kubectl_complete-dra"
    script.write_text('#!/bin/sh\nexec kubectl-dra __complete "$@"\n')
    script.chmod(0o755)
    subcommands = kubectl(on_path, "__complete", "dra", "describe", "")
    assert subcommands.returncode == 0, subcommands.stderr
    lines = subcommands.stdout.splitlines()
    assert [line.split("\t")[0] for line in lines[:-1]] == ["claim", "node", "pod"]
    assert lines[-1] == ":4"  # no file names
    flags = kubectl(on_path, "__complete", "dra", "top", "--wa")
    assert flags.stdout.splitlines()[0].startswith("--watch\t")
