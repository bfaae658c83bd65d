"""The pure parts of the real node (hack/node.py, hack/node_build.py): pods made runnable on it,
reading what a container saw, the image archives, and paths that must stay per cluster."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from hack import node, node_build

SCENARIO = [
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "gpu0"}},
    {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "pod0", "namespace": "gpu0"},
        "spec": {
            "initContainers": [
                {"name": "prep", "image": "ubuntu:22.04", "command": ["bash", "-c"]}
            ],
            "containers": [
                {
                    "name": "ctr0",
                    "image": "ubuntu:22.04",
                    "command": ["bash", "-c"],
                    "args": ["export"],
                }
            ],
        },
    },
]


def test_pods_are_pinned_to_the_real_node_and_use_the_local_image() -> None:
    namespace, pod = node.for_real_node(SCENARIO)
    assert namespace == SCENARIO[0]
    spec = pod["spec"]
    assert spec["nodeSelector"] == {node.REAL_NODE_LABEL: "true"}
    assert "hostNetwork" not in spec, "pods get their own address on the node's bridge"
    for c in [*spec["initContainers"], *spec["containers"]]:
        assert c["image"] == node_build.BUSYBOX_IMAGE
        assert c["imagePullPolicy"] == "Never"
        assert c["command"] == ["sh", "-c"]
    assert spec["containers"][0]["args"] == ["export"]
    assert SCENARIO[1]["spec"]["containers"][0]["image"] == "ubuntu:22.04", "input unchanged"


@pytest.mark.parametrize(
    "line",
    [
        "export GPU_DEVICE_3='gpu-3'",  # busybox sh
        'declare -x GPU_DEVICE_3="gpu-3"',  # bash
    ],
)
def test_gpu_env_reads_busybox_and_bash_export(line: str) -> None:
    text = f"export HOME='/root'\n{line}\nexport GPU_DEVICE_3_SHARING_STRATEGY='TimeSlicing'\n"
    assert node.gpu_env(text) == {
        "GPU_DEVICE_3": "gpu-3",
        "GPU_DEVICE_3_SHARING_STRATEGY": "TimeSlicing",
    }


def test_oci_archive_is_a_layout_ctr_can_import(tmp_path: Path) -> None:
    layer = node_build.layer_tar({"bin/busybox": b"\x7fELF"}, {"bin/sh": "/bin/busybox"}, ["bin"])
    archive = tmp_path / "img.tar"
    node_build.oci_archive(
        archive, repo="kubectl-dra.local/x", tag="1", layer=layer, entrypoint=["/bin/sh"]
    )
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
        index = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
        (manifest_desc,) = index["manifests"]
        digest = manifest_desc["digest"].split(":", 1)[1]
        manifest = json.loads(tar.extractfile(f"blobs/sha256/{digest}").read())  # type: ignore[union-attr]
    assert "oci-layout" in names
    assert manifest_desc["annotations"]["org.opencontainers.image.ref.name"] == "1"
    assert {f"blobs/sha256/{d['digest'].split(':')[1]}" for d in manifest["layers"]} <= names
    assert node_build.image_ref(archive) == "kubectl-dra.local/x:1"
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        assert tar.getmember("bin/sh").issym() and tar.getmember("bin/busybox").mtime == 0


def test_two_cluster_dirs_get_separate_node_state(tmp_path: Path) -> None:
    dev, e2e = node.NodePaths(tmp_path), node.NodePaths(tmp_path / "e2e")
    assert dev.cgroup_root != e2e.cgroup_root
    assert not str(e2e.root).startswith(str(dev.root) + "/")
    config = node.containerd_config(dev, _artifacts(tmp_path))
    # Every path containerd writes to is under the node dir (shim sockets aside, see down()).
    for key in ("root", "state", "address", "path", "Root", "conf_dir"):
        for line in config.splitlines():
            if line.strip().startswith(f"{key} =") and line.strip() != f"{key} = ''":
                assert str(dev.root) in line, line


def test_socket_paths_over_the_unix_limit_are_refused(tmp_path: Path) -> None:
    with pytest.raises(node.NodeError, match="unix socket path"):
        node.NodePaths(Path("/work") / ("x" * 50)).check_socket_paths()
    node.NodePaths(Path("/work/wt-node/.cluster/e2e")).check_socket_paths()


def _artifacts(tmp: Path) -> node_build.NodeArtifacts:
    return node_build.NodeArtifacts(
        kubelet=tmp / "kubelet",
        kube_proxy=tmp / "kube-proxy",
        containerd=tmp / "containerd",
        shim_dir=tmp,
        ctr=tmp / "ctr",
        plugin=tmp / "plugin",
        runc=Path("/usr/sbin/runc"),
        cni_bin_dir=Path("/usr/lib/cni"),
        pause_image="kubectl-dra.local/pause:1.37.2",
        pause_archive=tmp / "pause.tar",
        busybox_archive=tmp / "busybox.tar",
    )
