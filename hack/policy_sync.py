"""The kubelet's ConfigMap projection, for our webhooks running as host processes.

In a cluster the webhook's policy is the ConfigMap `kubectl-dra-policy`, mounted as a volume:
the kubelet writes each version of its data into a new hidden folder and swaps the `..data`
symlink to it in one rename, and `policy.yaml` is a symlink through `..data`, so a reader sees
the old file or the new one, never half of one; the webhook notices the swap and reloads
(webhook/serving/reload.py). Here the webhook runs beside the cluster, not in a pod, so this
process does the kubelet's part: it polls the ConfigMap and projects its data the same way.

    python -m hack.policy_sync --kubeconfig K --namespace NS --name CM --dir FOLDER

`start` runs it under the cluster's pid files (so `down` stops it) and returns the policy file
to give the webhook. `project` is the atomic write, on its own.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from hack.controlplane import ControlPlane

DATA_LINK = "..data"
POLICY_KEY = "policy.yaml"


def projected(folder: Path) -> dict[str, bytes]:
    """The files currently projected into `folder` (empty if nothing is yet)."""
    data = folder / DATA_LINK
    if not data.is_dir():
        return {}
    return {p.name: p.read_bytes() for p in sorted(data.iterdir()) if p.is_file()}


def project(folder: Path, files: Mapping[str, str]) -> bool:
    """Write `files` into `folder` as the kubelet writes a ConfigMap volume; False if unchanged.

    The new version goes into a fresh `..<timestamp>` folder; a `..data_tmp` symlink to it is
    renamed over `..data` (one atomic rename), then each key's symlink `<key> -> ..data/<key>`
    is made if missing, keys no longer present are unlinked, and the previous folder removed.
    """
    wanted = {key: value.encode() for key, value in files.items()}
    if projected(folder) == wanted:
        return False
    for key in wanted:
        if key.startswith(".") or "/" in key:
            raise ValueError(f"ConfigMap key {key!r}: not a file name the projection can write")
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / DATA_LINK
    old = link.readlink().name if link.is_symlink() else None
    version = Path(tempfile.mkdtemp(prefix=time.strftime("..%Y_%m_%d_%H_%M_%S."), dir=folder))
    for key, value in wanted.items():
        (version / key).write_bytes(value)
    tmp = folder / f"{DATA_LINK}_tmp"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(version.name)
    tmp.replace(folder / DATA_LINK)
    for key in wanted:
        link = folder / key
        if not link.is_symlink():
            link.symlink_to(f"{DATA_LINK}/{key}")
    for link in folder.iterdir():
        if link.is_symlink() and not link.name.startswith(".") and link.name not in wanted:
            link.unlink()
    if old is not None and old != version.name:
        shutil.rmtree(folder / old, ignore_errors=True)
    return True


def run(kubeconfig: Path, namespace: str, name: str, folder: Path, interval: float) -> None:
    """Poll the ConfigMap every `interval` seconds and project its data; until terminated."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    from hack.fixtures import new_api_client

    core = client.CoreV1Api(new_api_client(kubeconfig))
    while True:
        try:
            cm = core.read_namespaced_config_map(name, namespace, _request_timeout=10)
            if project(folder, cm.data or {}):
                version = cm.metadata.resource_version if cm.metadata else "?"
                print(
                    f"projected ConfigMap {namespace}/{name} (resourceVersion {version}) "
                    f"into {folder}",
                    flush=True,
                )
        except (ApiException, OSError) as exc:
            # As the kubelet does: the last projection stays until the ConfigMap can be read.
            print(f"ConfigMap {namespace}/{name}: {exc}".splitlines()[0], flush=True)
        time.sleep(interval)


def start(cp: ControlPlane, name: str, *, namespace: str, configmap: str) -> Path:
    """Run the projection of `namespace/configmap` for webhook instance `name`; its policy file.

    Waits until the first projection is written (the webhook refuses to start without a policy,
    and must not start with an earlier run's).
    """
    folder = cp.paths.webhook(name) / "policy"
    pid_name = f"policy-sync-{name}"
    cp.stop(pid_name, quiet=True)
    # A projection left by an earlier run is stale: waiting for the file must mean this run's.
    shutil.rmtree(folder, ignore_errors=True)
    argv = [
        sys.executable, "-m", "hack.policy_sync", f"--kubeconfig={cp.kubeconfig}",
        f"--namespace={namespace}", f"--name={configmap}", f"--dir={folder}",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    cp.spawn(pid_name, argv, env=env)
    cp.wait_ready(pid_name, timeout=60, probe=lambda: (folder / POLICY_KEY).is_file())
    return folder / POLICY_KEY


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hack.policy_sync", description=__doc__)
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--name", required=True, help="the ConfigMap")
    parser.add_argument("--dir", type=Path, required=True, help="the folder to project into")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between reads")
    args = parser.parse_args(argv)
    try:
        run(args.kubeconfig, args.namespace, args.name, args.dir, args.interval)
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
