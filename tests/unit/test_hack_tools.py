"""The pure parts of the cluster tooling (hack/): Go module generation and simulated devices.

What the API server itself checks (slice validation, webhook registration) is covered by
tests/e2e against the real one; these catch mistakes before a 10-minute build or a cluster.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hack import fakegpu, k8s_build

GO_MOD = """module k8s.io/kubernetes

go 1.26.0

require (
\tk8s.io/api v0.0.0
\tk8s.io/client-go v0.0.0
)

replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/client-go => ./staging/src/k8s.io/client-go
\tk8s.io/sample-controller => ./staging/src/k8s.io/sample-controller
)
"""

SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")


@pytest.mark.parametrize(("given", "expected"), [("v1.37.2", "1.37.2"), ("1.34.4", "1.34.4")])
def test_version_is_normalised(given: str, expected: str) -> None:
    assert k8s_build.normalize_version(given) == expected


@pytest.mark.parametrize("bad", ["1.37", "latest", "v1.38.0-beta.0"])
def test_version_that_is_not_a_release_is_refused(bad: str) -> None:
    with pytest.raises(SystemExit, match="K8S_VERSION"):
        k8s_build.normalize_version(bad)


def test_generated_module_replaces_published_staging_modules_with_v0_minor(tmp_path: Path) -> None:
    published = {"k8s.io/api", "k8s.io/client-go"}
    k8s_build.write_module(tmp_path, version="1.37.2", kubernetes_gomod=GO_MOD, published=published)

    gomod = (tmp_path / "go.mod").read_text()
    assert "require k8s.io/kubernetes v1.37.2" in gomod
    assert "\tk8s.io/api => k8s.io/api v0.37.2" in gomod
    assert "\tk8s.io/client-go => k8s.io/client-go v0.37.2" in gomod
    assert "sample-controller" not in gomod, "unpublished modules must not be replaced"
    assert "\ngo 1.26.0\n" in gomod


def test_cache_dir_follows_xdg_cache_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert k8s_build.bin_dir("1.34.4") == tmp_path / "kubectl-dra" / "k8s" / "1.34.4" / "bin"


def test_a_control_plane_only_cache_is_built_for_a_control_plane_only(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    bin_dir = k8s_build.bin_dir(k8s_build.OLDEST_VERSION)
    bin_dir.mkdir(parents=True)
    for name in k8s_build.CONTROL_PLANE:
        (bin_dir / name).touch(mode=0o755)
    assert k8s_build.is_built(k8s_build.OLDEST_VERSION, k8s_build.CONTROL_PLANE)
    assert not k8s_build.is_built(k8s_build.OLDEST_VERSION)  # no kubelet, no kube-proxy
    # Cached: no go toolchain is asked for.
    assert k8s_build.build(k8s_build.OLDEST_VERSION, only=k8s_build.CONTROL_PLANE) == bin_dir
    with pytest.raises(SystemExit, match="kubelett"):
        k8s_build.build(k8s_build.OLDEST_VERSION, only=("kubelett",))


@pytest.mark.parametrize(
    ("product", "label"),
    [
        ("NVIDIA H100 80GB HBM3", "NVIDIA-H100-80GB-HBM3"),
        ("NVIDIA A100-SXM4-80GB", "NVIDIA-A100-SXM4-80GB"),
    ],
)
def test_gfd_product_label_is_sanitised_like_gfd(product: str, label: str) -> None:
    assert fakegpu.gfd_sanitise(product) == label


@pytest.mark.parametrize("node", fakegpu.default_nodes(), ids=lambda n: n.name)
def test_simulated_slice_respects_api_limits(node: fakegpu.FakeNode) -> None:
    spec = fakegpu.make_slice(node)["spec"]
    names = [d["name"] for d in spec["devices"]]
    assert spec["pool"]["name"] == spec["nodeName"] == node.name
    assert len(names) == len(set(names)) <= 128
    for device in spec["devices"]:
        assert len(device["attributes"]) + len(device["capacity"]) <= 32
        for value in device["attributes"].values():
            if "version" in value:
                assert SEMVER.match(value["version"]), value  # the API server insists on semver


def test_mig_devices_replace_their_parent_gpu_and_point_at_its_uuid() -> None:
    node = fakegpu.FakeNode("n", fakegpu.NVIDIA_DRIVER, fakegpu.A100_80GB, mig_gpus=(7,))
    devices = {d["name"]: d for d in fakegpu.make_nvidia_slice(node)["spec"]["devices"]}

    assert "gpu-7" not in devices
    migs = [d for name, d in devices.items() if name.startswith("gpu-7-mig-1g10gb-19-")]
    assert len(migs) == 7
    parent = fakegpu.device_uuid("n", 7)
    assert {m["attributes"]["parentUUID"]["string"] for m in migs} == {parent}
    assert {m["attributes"]["type"]["string"] for m in migs} == {"mig"}
    assert devices["gpu-0"]["attributes"]["type"]["string"] == "gpu"


def test_cache_lock_makes_a_second_builder_wait_until_the_first_is_done(tmp_path: Path) -> None:
    import io
    import threading

    entered = threading.Event()
    waited = io.StringIO()

    def second_builder() -> None:
        with k8s_build.cache_lock(tmp_path, out=waited):
            entered.set()

    with k8s_build.cache_lock(tmp_path):
        thread = threading.Thread(target=second_builder)
        thread.start()
        assert not entered.wait(0.5), "the second builder got the lock while the first held it"
    thread.join(10)
    assert entered.is_set()
    assert "waiting for another build" in waited.getvalue()
