#!/usr/bin/env python3
"""`make demo`: the user's GPU scenarios, legacy and native, on a real local control plane.

1. build (cached) and start the control plane with simulated GPU nodes (python -m hack.cluster),
   with a progress line at least every 30 s while binaries build;
2. serve our webhook on loopback and register it, each instance reading its policy from a
   ConfigMap in the cluster as in production (hack/policy_sync.py projects it into the file the
   webhook reloads, as the kubelet does for a mounted ConfigMap):
   - instance `default`: ConfigMap kubectl-dra/kubectl-dra-policy from
     examples/policy-example-driver.yaml (legacy `nvidia.com/gpu` -> `gpu.example.com`, pod
     sharing / shared claims where that policy allows them),
   - instance `nvidia`: kubectl-dra/kubectl-dra-policy-nvidia, the shipped policy
     (manifests/base/policy-configmap.yaml), for namespace `nvidia-legacy` (NVIDIA driver);
3. apply examples/01-03 (native DRA, unchanged), examples/legacy/01-03 (device-plugin form),
   and examples/00-legacy-pod.yaml in `nvidia-legacy`;
4. wait until every pod is bound and its claims allocated, then print which device each pod
   got on which node (`kubectl dra describe`);
5. the scenario pods run on one real node (kubelet, containerd, the example driver's DRA
   plugin; hack/node.py): print what each container got, from `kubectl logs`, and a PASS/FAIL
   verdict per scenario against what it is meant to show;
6. edit the policy ConfigMap (namespace gpu-legacy: time-slicing, interval Long) and show the
   next pod there rewritten under the new policy, with its verdict.
The cluster keeps running; the last lines say how to use and stop it. Output fits 120 columns.

Over 500 lines on purpose: a script read from top to bottom, step by step, as the demo runs;
its pure parts (verdicts, widths, the policy edit) are tested in tests/unit/test_demo.py.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO, cast

import yaml

from dracore.policy import Policy
from hack import cluster as cluster_mod
from hack import node as node_mod
from hack import policy_sync
from hack.procs import ClusterError
from hack.webhook_lifecycle import INSTANCE_LABEL

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
NVIDIA_NAMESPACE = "nvidia-legacy"
SCENARIOS = ("01-two-gpus-one-pod.yaml", "02-intra-pod-sharing.yaml", "03-inter-pod-sharing.yaml")
WIDTH = 120  # no output line is wider
HEARTBEAT_SECONDS = 30.0  # a progress line at least this often during a long step
POLICY_NAMESPACE = "kubectl-dra"
# The ConfigMap each webhook instance reads its policy from, and where it comes from.
POLICY_CONFIGMAPS = {
    "default": ("kubectl-dra-policy", EXAMPLES / "policy-example-driver.yaml"),
    "nvidia": ("kubectl-dra-policy-nvidia", ROOT / "manifests" / "base" / "policy-configmap.yaml"),
}
# The edit at the end: this namespace's GPUs become time-sliced with a long slice.
EDIT_NAMESPACE = "gpu-legacy"
EDIT_RULE: Mapping[str, Any] = {"sharing": "TimeSlicing", "timeSlicing": {"interval": "Long"}}
AFTER_EDIT_POD = "pod-after-edit"
REWRITTEN = "kubectl-dra.io/rewritten"


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


# -- output: 120 columns, progress during long steps -------------------------------------------


def fit(line: str, width: int = WIDTH) -> str:
    """`line` wrapped to `width` columns; continuation lines indented 4 more than the first."""
    if len(line) <= width:
        return line
    indent = min(len(line) - len(line.lstrip(" ")) + 4, width // 2)
    return "\n".join(
        textwrap.wrap(
            line, width, subsequent_indent=" " * indent, break_on_hyphens=False, tabsize=8
        )
    )


class FittedStream(io.TextIOBase):
    """A text stream that writes whole lines to `target`, each wrapped by `fit`."""

    def __init__(self, target: TextIO, width: int = WIDTH) -> None:
        self._target, self._width = target, width
        self._pending = ""
        self._lock = threading.Lock()  # the heartbeat thread writes too

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with self._lock:
            *lines, self._pending = (self._pending + text).split("\n")
            for line in lines:
                self._target.write(fit(line, self._width) + "\n")
        return len(text)

    def flush(self) -> None:
        with self._lock:
            self._target.flush()

    def close(self) -> None:
        with self._lock:
            if self._pending:
                self._target.write(fit(self._pending, self._width) + "\n")
                self._pending = ""
            self._target.flush()


@contextlib.contextmanager
def fitted_output() -> Iterator[None]:
    """stdout and stderr wrapped to WIDTH for the duration (restored afterwards)."""
    saved = sys.stdout, sys.stderr
    out, err = FittedStream(sys.stdout), FittedStream(sys.stderr)
    sys.stdout, sys.stderr = cast(TextIO, out), cast(TextIO, err)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved
        out.close()
        err.close()


def elapsed(seconds: float) -> str:
    """`75` -> `1 min 15 s`; `9` -> `9 s`."""
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


@contextlib.contextmanager
def heartbeat(label: str, every: float = HEARTBEAT_SECONDS) -> Iterator[None]:
    """Print `... label: N min S s elapsed` every `every` seconds until the block ends (cold
    builds of Kubernetes, the kubelet and containerd take many minutes)."""
    t0 = time.monotonic()
    done = threading.Event()

    def beat() -> None:
        while not done.wait(every):
            print(f"    ... {label}: {elapsed(time.monotonic() - t0)} elapsed", flush=True)

    thread = threading.Thread(target=beat, name="heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
    print(f"    {label}: done in {elapsed(time.monotonic() - t0)}", flush=True)  # not on errors


# -- verdicts ----------------------------------------------------------------------------------

_DEVICE_VAR = re.compile(r"GPU_DEVICE_[0-9]+")


@dataclass(frozen=True)
class Expectation:
    """What a scenario shows, as the containers of its pods see it (GPU_DEVICE_* variables)."""

    title: str
    namespace: str
    pods: tuple[str, ...]
    devices: int  # devices each container sees
    shared: bool = False  # every container of `pods` sees the same devices
    # The example driver's sharing without opaque config is time-slicing, interval Default.
    strategy: str = "TimeSlicing"
    interval: str = "Default"


EXPECTATIONS = (
    Expectation(
        "native: two GPUs for one container, from a ResourceClaimTemplate", "gpu", ("pod0",), 2
    ),
    Expectation(
        "native: two containers of one pod share one GPU", "gpu0", ("pod0",), 1, shared=True
    ),
    Expectation(
        "native: two pods share one GPU through a named ResourceClaim",
        "gpu1",
        ("pod0", "pod1"),
        1,
        shared=True,
    ),
    Expectation(
        "legacy nvidia.com/gpu: 2, rewritten: two GPUs for one container",
        "gpu-legacy",
        ("pod0",),
        2,
    ),
    Expectation(
        "legacy, pod-sharing annotation, rewritten: two containers share one GPU",
        "gpu0-legacy",
        ("pod0",),
        1,
        shared=True,
    ),
    Expectation(
        "legacy, shared-claim annotation, rewritten: two pods share one GPU",
        "gpu1-legacy",
        ("pod0", "pod1"),
        1,
        shared=True,
    ),
)
AFTER_EDIT = Expectation(
    f"after the edit: the next pod in {EDIT_NAMESPACE} is time-sliced with interval Long",
    EDIT_NAMESPACE,
    (AFTER_EDIT_POD,),
    1,
    interval="Long",
)

ContainerEnv = Mapping[tuple[str, str], Mapping[str, str]]


def verdict(expected: Expectation, seen: ContainerEnv) -> tuple[bool, str]:
    """PASS/FAIL of a scenario from what its containers saw: `seen` maps (pod, container) to
    the GPU_DEVICE_* variables in its log. Returns (passed, what was seen or what is wrong)."""
    mine = {key: env for key, env in sorted(seen.items()) if key[0] in expected.pods}
    problems = [
        f"{pod}: no container seen" for pod in expected.pods if pod not in {k[0] for k in mine}
    ]
    devices: dict[tuple[str, str], tuple[str, ...]] = {}
    for (pod, container), env in mine.items():
        devices[pod, container] = tuple(
            sorted(v for k, v in env.items() if _DEVICE_VAR.fullmatch(k))
        )
        count = len(devices[pod, container])
        if count != expected.devices:
            problems.append(
                f"{pod}/{container} sees {count} device(s), expected {expected.devices}"
            )
        for key, value in sorted(env.items()):
            want = {
                "_SHARING_STRATEGY": expected.strategy,
                "_TIMESLICE_INTERVAL": expected.interval,
            }
            for suffix, wanted in want.items():
                if key.endswith(suffix) and value != wanted:
                    problems.append(f"{pod}/{container} {key}={value}, expected {wanted}")
    if expected.shared and len(set(devices.values())) > 1:
        problems.append("the containers see different devices")
    if problems:
        return False, "; ".join(problems)
    seen_text = ", ".join(f"{p}/{c} {'+'.join(d)}" for (p, c), d in devices.items())
    return True, f"{seen_text} ({expected.strategy}, interval {expected.interval})"


def allocation_verdict(
    rows: Sequence[Sequence[str]], namespace: str, pod: str, *, devices: int, driver: str
) -> tuple[bool, str]:
    """PASS/FAIL of a pod bound to a simulated node (it never runs): its allocated devices, from
    `allocation_rows`, must be `devices` devices of `driver`."""
    got = [row for row in rows if row[0] == namespace and row[1] == pod]
    names = [row[5] for row in got]
    if len(names) != devices or not all(n.startswith(f"{driver}/") for n in names):
        return (
            False,
            f"allocated {', '.join(names) or 'nothing'}; expected {devices} device(s) of {driver}",
        )
    short = ", ".join(n.removeprefix(f"{driver}/") for n in names)
    return True, f"{devices} device(s) of {driver} on {got[0][3]}: {short}"


def verdict_line(passed: bool, title: str, detail: str) -> str:
    """`PASS  title`, and what was seen (or what is wrong) on the next line, within WIDTH."""
    return fit(f"{'PASS' if passed else 'FAIL'}  {title}") + "\n" + fit(f"      {detail}")


# -- the policy, from ConfigMaps ---------------------------------------------------------------


def policy_configmap(source: Path, name: str) -> dict[str, Any]:
    """The ConfigMap (in POLICY_NAMESPACE, named `name`) holding the policy of `source`, itself a
    policy ConfigMap manifest."""
    (doc,) = [d for d in yaml.safe_load_all(source.read_text()) if d]
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": POLICY_NAMESPACE},
        "data": {policy_sync.POLICY_KEY: doc["data"][policy_sync.POLICY_KEY]},
    }


def edited(configmap: Mapping[str, Any], namespace: str, rule: Mapping[str, Any]) -> dict[str, Any]:
    """`configmap` with a first `spec.namespaces` rule for `namespace` (it wins over later ones)."""
    result = copy.deepcopy(dict(configmap))
    document = yaml.safe_load(result["data"][policy_sync.POLICY_KEY])
    rules = document["spec"].get("namespaces") or []
    document["spec"]["namespaces"] = [{"names": [namespace], **copy.deepcopy(dict(rule))}, *rules]
    result["data"][policy_sync.POLICY_KEY] = yaml.safe_dump(document, sort_keys=False)
    return result


def start_webhooks(cl: cluster_mod.Cluster) -> dict[str, dict[str, Any]]:
    """Each instance's policy ConfigMap applied, projected (policy_sync) and served."""
    cl.kubectl("create", "namespace", POLICY_NAMESPACE, check=False)
    configmaps = {}
    for instance, (name, source) in POLICY_CONFIGMAPS.items():
        configmap = policy_configmap(source, name)
        cl.kubectl("apply", "-f", "-", input=yaml.safe_dump(configmap))
        policy_file = policy_sync.start(cl, instance, namespace=POLICY_NAMESPACE, configmap=name)
        shown = policy_file.relative_to(cl.paths.root)
        print(f"{instance}: ConfigMap {POLICY_NAMESPACE}/{name} ({source.relative_to(ROOT)}),")
        print(f"    projected by policy-sync-{instance} into <cluster dir>/{shown}")
        cl.webhook_up(
            instance, policy=policy_file, policy_configmap=(POLICY_NAMESPACE, name), out=sys.stderr
        )
        configmaps[instance] = configmap
    return configmaps


def create(
    cl: cluster_mod.Cluster, path: Path, *, namespace: str | None = None, real_node: bool = False
) -> None:
    """`kubectl create`, where objects from an earlier run may already exist.

    Not `kubectl apply`: re-applying a legacy pod would try to put `nvidia.com/gpu` back into
    the (immutable) spec of the pod the webhook rewrote, and the API server refuses that update.
    """
    args = ["create", "-f", "-" if real_node else str(path)]
    args += ["-n", namespace] if namespace else []
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    manifest = yaml.safe_dump_all(node_mod.for_real_node(docs)) if real_node else None
    deadline = time.monotonic() + 30
    while True:
        proc = cl.kubectl(*args, check=False, input=manifest)
        print(proc.stdout, end="")
        errors = [line for line in proc.stderr.splitlines() if line.strip()]
        if all("AlreadyExists" in line or "already exists" in line for line in errors):
            kept = [
                m.group(1)
                for line in errors
                if (m := re.search(r'(\S+ "[^"]+") already exists', line))
            ]
            if kept:
                print(f"kept from an earlier run: {', '.join(kept)}")
            return
        # A new namespace gets its default ServiceAccount a moment after it exists.
        if 'serviceaccount "default" not found' not in proc.stderr or time.monotonic() > deadline:
            raise ClusterError(f"kubectl {' '.join(args)}:\n{proc.stderr}")
        time.sleep(0.3)


def demo_namespaces() -> list[str]:
    names = []
    for path in [EXAMPLES / n for n in SCENARIOS] + [EXAMPLES / "legacy" / n for n in SCENARIOS]:
        names += [
            d["metadata"]["name"]
            for d in yaml.safe_load_all(path.read_text())
            if d and d["kind"] == "Namespace"
        ]
    return [*names, NVIDIA_NAMESPACE]


def allocation_rows(api: Any, namespaces: list[str]) -> tuple[list[list[str]], list[str]]:
    """One row per (pod, allocated device); plus the pods still waiting."""
    from kubernetes import client

    core: Any = client.CoreV1Api(api)
    custom: Any = client.CustomObjectsApi(api)
    slices = custom.list_cluster_custom_object("resource.k8s.io", "v1", "resourceslices")["items"]
    describe = {}
    for s in slices:
        for d in s["spec"]["devices"]:
            attrs = d.get("attributes", {})
            label = attrs.get("productName", attrs.get("model", {})).get("string", "")
            describe[(s["spec"]["driver"], s["spec"]["pool"]["name"], d["name"])] = label
    rows, waiting = [], []
    for ns in namespaces:
        for pod in core.list_namespaced_pod(ns).items:
            pod = api.sanitize_for_serialization(pod)
            name, node = pod["metadata"]["name"], pod["spec"].get("nodeName")
            generated = {
                s["name"]: s.get("resourceClaimName")
                for s in pod.get("status", {}).get("resourceClaimStatuses") or []
            }
            pod_rows: list[list[str]] = []
            for ref in pod["spec"].get("resourceClaims") or []:
                claim_name = ref.get("resourceClaimName") or generated.get(ref["name"])
                claim = (
                    custom.get_namespaced_custom_object(
                        "resource.k8s.io", "v1", ns, "resourceclaims", claim_name
                    )
                    if claim_name
                    else {}
                )
                allocation = claim.get("status", {}).get("allocation")
                reserved = {r["uid"] for r in claim.get("status", {}).get("reservedFor") or []}
                if not node or not allocation or pod["metadata"]["uid"] not in reserved:
                    pod_rows = []
                    break
                users = [
                    c["name"]
                    for c in pod["spec"]["containers"]
                    if any(
                        r["name"] == ref["name"] for r in c.get("resources", {}).get("claims") or []
                    )
                ]
                for r in allocation["devices"]["results"]:
                    key = (r["driver"], r["pool"], r["device"])
                    pod_rows.append(
                        [
                            ns,
                            name,
                            ",".join(users),
                            node,
                            str(claim_name),
                            f"{r['driver']}/{r['device']}",
                            describe.get(key, ""),
                        ]
                    )
            if pod_rows:
                rows += pod_rows
            else:
                waiting.append(f"{ns}/{name}")
    return rows, waiting


def allocation_table(rows: Sequence[Sequence[str]]) -> list[str]:
    """The lines of the per-device table (without the CLAIM column of `allocation_rows`, which
    would take it past WIDTH; `kubectl dra describe pods -A` shows claims)."""
    header = ["NAMESPACE", "POD", "CONTAINERS", "NODE", "DEVICE", "MODEL"]
    table = [header, *([*r[:4], *r[5:]] for r in rows)]
    widths = [max(len(str(x)) for x in col) for col in zip(*table, strict=True)]
    return [
        "  ".join(str(x).ljust(w) for x, w in zip(r, widths, strict=True)).rstrip() for r in table
    ]


def show_allocations(cl: cluster_mod.Cluster, rows: Sequence[Sequence[str]]) -> None:
    """Which device each pod got (from the API), then `kubectl dra describe -A`: the devices each
    namespace holds (its `describe pods -A` view is wider than WIDTH; the last lines point to it)."""
    for line in allocation_table(rows):
        print(line)
    argv = [sys.executable, "-m", "kubectl_dra", "describe", "-A", f"--kubeconfig={cl.kubeconfig}"]
    print(f"\n$ kubectl dra describe -A    # KUBECONFIG={cl.kubeconfig}")
    env = {**os.environ, "COLUMNS": str(WIDTH)}
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)
    print(
        proc.stdout
        if proc.returncode == 0
        else f"(kubectl dra describe failed: {proc.stderr.strip()})"
    )


def pod_logs(
    cl: cluster_mod.Cluster, namespace: str, pod: Mapping[str, Any]
) -> dict[tuple[str, str], dict[str, str]] | None:
    """Wait for `pod` to run; print and return each container's GPU_DEVICE_* variables (None if
    it does not reach Ready)."""
    name = pod["metadata"]["name"]
    proc = cl.kubectl(
        "wait", "--for=condition=Ready", f"pod/{name}", "-n", namespace, "--timeout=90s",
        check=False, timeout=120,
    )  # fmt: skip
    if proc.returncode != 0:
        print(f"{namespace}/{name} not running: {proc.stderr.strip()}", file=sys.stderr)
        return None
    seen: dict[tuple[str, str], dict[str, str]] = {}
    for c in pod["spec"]["containers"]:
        print(f"$ kubectl logs -n {namespace} {name} -c {c['name']} | grep GPU_DEVICE")
        logs = cl.kubectl("logs", "-n", namespace, name, "-c", c["name"]).stdout
        for line in logs.splitlines():
            if "GPU_DEVICE" in line:
                print(line)
        seen[name, c["name"]] = node_mod.gpu_env(logs)
    return seen


def show_logs(
    cl: cluster_mod.Cluster, namespaces: list[str]
) -> tuple[Mapping[str, ContainerEnv], list[str]]:
    """`kubectl logs` of every container of the scenario pods, GPU_DEVICE_* lines only; returns
    what each namespace's containers saw, and the pods that did not reach Running."""
    not_running: list[str] = []
    seen: dict[str, dict[tuple[str, str], dict[str, str]]] = {}
    for ns in namespaces:
        pods = json.loads(cl.kubectl("get", "pods", "-n", ns, "-o", "json").stdout)["items"]
        seen[ns] = {}
        for pod in pods:
            got = pod_logs(cl, ns, pod)
            if got is None:
                not_running.append(f"{ns}/{pod['metadata']['name']}")
            else:
                seen[ns].update(got)
    return seen, not_running


def after_edit_pod() -> dict[str, Any]:
    """A pod like examples/legacy/01's, asking for one GPU, in EDIT_NAMESPACE."""
    docs = [d for d in yaml.safe_load_all((EXAMPLES / "legacy" / SCENARIOS[0]).read_text()) if d]
    (pod,) = copy.deepcopy([d for d in docs if d["kind"] == "Pod"])
    pod["metadata"] = {"name": AFTER_EDIT_POD, "namespace": EDIT_NAMESPACE}
    for c in pod["spec"]["containers"]:
        c["resources"] = {"limits": {"nvidia.com/gpu": 1}}
    (runnable,) = node_mod.for_real_node([pod])
    return runnable


def rewritten_under(pod: Mapping[str, Any]) -> str | None:
    """The digest of the policy the webhook rewrote `pod` under (from its record), if any."""
    record = (pod.get("metadata", {}).get("annotations") or {}).get(REWRITTEN)
    return str(json.loads(record).get("policy")) if record else None


def create_under(
    cl: cluster_mod.Cluster, pod: Mapping[str, Any], digest: str, *, timeout: float = 120
) -> None:
    """Create `pod` once the webhook rewrites it under the policy `digest`.

    The webhook's workers each reload the projected file on their own poll (5 s), so the
    server-side dry run is repeated until it shows the new policy; a pod a lagging worker
    still rewrote under the old one is deleted and made again."""
    manifest = yaml.safe_dump(pod)
    name, namespace = pod["metadata"]["name"], pod["metadata"]["namespace"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dry = cl.kubectl("create", "--dry-run=server", "-o", "json", "-f", "-", input=manifest)
        if rewritten_under(json.loads(dry.stdout)) != digest:
            time.sleep(1)
            continue
        made = json.loads(cl.kubectl("create", "-o", "json", "-f", "-", input=manifest).stdout)
        if rewritten_under(made) == digest:
            return
        cl.kubectl("delete", "pod", name, "-n", namespace, "--wait=true")
    raise ClusterError(
        f"the webhook did not rewrite {namespace}/{name} under policy {digest} within {timeout:.0f} s"
    )


def edit_policy(cl: cluster_mod.Cluster, configmap: Mapping[str, Any]) -> tuple[bool, str]:
    """Edit the default instance's policy ConfigMap and show the next pod under it."""
    name = configmap["metadata"]["name"]
    new = edited(configmap, EDIT_NAMESPACE, EDIT_RULE)
    rule = json.dumps({"names": [EDIT_NAMESPACE], **EDIT_RULE}, separators=(", ", ": "))
    print(
        f"$ kubectl apply -f -   # ConfigMap {POLICY_NAMESPACE}/{name}, a first spec.namespaces rule:"
    )
    print(f"    {rule}")
    cl.kubectl("apply", "-f", "-", input=yaml.safe_dump(new))
    digest = Policy.from_configmap(new).digest
    print(
        f"policy {digest}; its devices are freed by deleting {EDIT_NAMESPACE}/pod0 (the real node has 8)"
    )
    cl.kubectl(
        "delete",
        "pod",
        "pod0",
        "-n",
        EDIT_NAMESPACE,
        "--ignore-not-found",
        "--wait=true",
        timeout=120,
    )
    pod = after_edit_pod()
    create_under(cl, pod, digest)
    made = json.loads(
        cl.kubectl("get", "pod", AFTER_EDIT_POD, "-n", EDIT_NAMESPACE, "-o", "json").stdout
    )
    record = json.loads(made["metadata"]["annotations"][REWRITTEN])
    print(
        f"{EDIT_NAMESPACE}/{AFTER_EDIT_POD}: rewritten under policy {record['policy']}, sharing {record['sharing']}"
    )
    seen = pod_logs(cl, EDIT_NAMESPACE, made)
    return verdict(AFTER_EDIT, seen or {})


def main() -> int:
    with fitted_output():
        return run()


def run() -> int:
    cl = cluster_mod.Cluster()
    results: list[bool] = []
    try:
        step(
            "control plane (first run builds Kubernetes from the Go module proxy; cached afterwards)"
        )
        with heartbeat("control plane"):
            cl.up(out=sys.stderr)
        step("one real node: kubelet, containerd, runc and the example driver's DRA plugin")
        with heartbeat("real node"):
            node_name = node_mod.RealNode(cl).up(out=sys.stderr)
        step(
            f"our webhook, its policy from a ConfigMap as in production (the shipped one for {NVIDIA_NAMESPACE})"
        )
        configmaps = start_webhooks(cl)
        cl.kubectl("create", "namespace", NVIDIA_NAMESPACE, check=False)
        cl.kubectl(
            "label", "--overwrite", "namespace", NVIDIA_NAMESPACE, f"{INSTANCE_LABEL}=nvidia"
        )
        # From an earlier run: made under an edited policy, and holding a device.
        cl.kubectl(
            "delete",
            "pod",
            AFTER_EDIT_POD,
            "-n",
            EDIT_NAMESPACE,
            "--ignore-not-found",
            "--wait=true",
            timeout=120,
        )

        step(f"native DRA scenarios (examples/0[1-3]-*.yaml), pods pinned to {node_name}")
        for name in SCENARIOS:
            create(cl, EXAMPLES / name, real_node=True)
        step(
            "the same scenarios in device-plugin form (examples/legacy/), rewritten by the webhook"
        )
        for name in SCENARIOS:
            create(cl, EXAMPLES / "legacy" / name, real_node=True)
        step(
            f"examples/00-legacy-pod.yaml (nvidia.com/gpu: 2) in {NVIDIA_NAMESPACE}, NVIDIA driver"
        )
        create(cl, EXAMPLES / "00-legacy-pod.yaml", namespace=NVIDIA_NAMESPACE)

        step("waiting for the scheduler to allocate devices and bind every pod")
        namespaces = demo_namespaces()
        with cl.api_client() as api:
            deadline = time.monotonic() + 60
            while True:
                rows, waiting = allocation_rows(api, namespaces)
                if not waiting or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        print()
        show_allocations(cl, rows)
        if waiting:
            print(f"\nstill not allocated after 60 s: {', '.join(waiting)}", file=sys.stderr)
        step(f"what the containers on {node_name} got from the example driver (kubectl logs)")
        seen, not_running = show_logs(cl, namespaces[:-1])

        step("verdicts: what each scenario is meant to show, against what its containers saw")
        for expected in EXPECTATIONS:
            passed, detail = verdict(expected, seen.get(expected.namespace, {}))
            results.append(passed)
            print(verdict_line(passed, f"{expected.namespace}: {expected.title}", detail))
        passed, detail = allocation_verdict(
            rows, NVIDIA_NAMESPACE, "pod-gpu-classic", devices=2, driver="gpu.nvidia.com"
        )
        results.append(passed)
        title = (
            f"{NVIDIA_NAMESPACE}: legacy pod under the shipped policy, on a simulated NVIDIA node"
        )
        print(verdict_line(passed, title, detail))

        step(f"editing the policy ConfigMap: {EDIT_NAMESPACE} becomes time-sliced, interval Long")
        passed, detail = edit_policy(cl, configmaps["default"])
        results.append(passed)
        print(verdict_line(passed, f"{EDIT_NAMESPACE}: {AFTER_EDIT.title}", detail))
    except (ClusterError, node_mod.NodeError, subprocess.TimeoutExpired) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    kubectl = cl.kubectl_path()
    print(
        f"\n{results.count(True)} of {len(results)} scenarios PASS.\n"
        "The cluster keeps running (the scenario pods run on the real node; others are only\n"
        "bound to simulated nodes). Edit the policy and the webhook follows within seconds:\n"
        f"  export KUBECONFIG={cl.kubeconfig} PATH={Path(sys.executable).parent}:$PATH\n"
        f"  alias kubectl={kubectl}\n"
        f"  kubectl edit configmap -n {POLICY_NAMESPACE} kubectl-dra-policy\n"
        "  kubectl get pods,resourceclaims -A\n"
        f"  kubectl get pod -n {EDIT_NAMESPACE} {AFTER_EDIT_POD} -o yaml    # a rewritten legacy pod\n"
        "  kubectl dra describe pods -A -o wide    # the plugin: claims, devices, sharing, originals\n"
        "Stop it with: make cluster-down"
    )
    return 1 if waiting or not_running or not all(results) else 0


if __name__ == "__main__":
    sys.exit(main())
