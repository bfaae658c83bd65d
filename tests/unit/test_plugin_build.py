"""hack/build_plugin.py and plugins/dra.yaml: the krew manifest carries the build's digest."""

from __future__ import annotations

import re

import yaml

from hack import build_plugin

ROOT = build_plugin.ROOT


def test_krew_manifest_carries_one_real_digest_and_the_project_version() -> None:
    manifest = yaml.safe_load((ROOT / "plugins" / "dra.yaml").read_text())
    version = f"v{build_plugin.version()}"
    assert manifest["spec"]["version"] == version
    digests = {platform["sha256"] for platform in manifest["spec"]["platforms"]}
    [digest] = digests  # one archive serves every platform
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert digest != "0" * 64
    for platform in manifest["spec"]["platforms"]:
        assert platform["uri"].endswith(f"/{version}/kubectl-dra-{version}.tar.gz")


def test_manifest_lists_exactly_the_platforms_the_file_is_built_for() -> None:
    manifest = yaml.safe_load((ROOT / "plugins" / "dra.yaml").read_text())
    krew_arch = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
    listed = {
        (p["selector"]["matchLabels"]["os"], p["selector"]["matchLabels"]["arch"])
        for p in manifest["spec"]["platforms"]
    }
    assert listed == {(system, krew_arch[machine]) for system, machine in build_plugin.TARGETS}


def test_a_linux_target_accepts_manylinux2014_and_2_28_wheels_and_nothing_newer() -> None:
    platform = build_plugin.complete_platform("linux", "x86_64", 12)
    tags = platform["compatible_tags"]
    assert tags[0] == "cp312-cp312-manylinux_2_28_x86_64"  # most specific first
    # orjson's Linux wheels are manylinux2014 only; google-re2's manylinux_2_28
    assert "cp312-cp312-manylinux2014_x86_64" in tags
    assert "cp312-cp312-manylinux_2_17_x86_64" in tags
    assert not any("manylinux_2_29" in tag or "cp313" in tag for tag in tags)
    assert platform["marker_environment"]["python_version"] == "3.12"


def test_the_macos_target_accepts_the_macos_14_wheels_google_re2_publishes() -> None:
    tags = build_plugin.complete_platform("darwin", "arm64", 13)["compatible_tags"]
    assert "cp313-cp313-macosx_14_0_arm64" in tags
    assert "cp313-cp313-macosx_11_0_arm64" in tags
    assert not any("macosx_15" in tag for tag in tags)
