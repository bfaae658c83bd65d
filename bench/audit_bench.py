"""`kubectl dra audit -A` at scale on the real local control plane (hack/cluster.py).

    nice .venv/bin/python -m bench.audit_bench [--nodes 1000] [--claims 4000] [--keep]

The cluster of bench/describe_bench.py (1,000 simulated nodes x 8 GPUs, 4,000 pods holding
allocated claims), plus legacy GPU workloads for audit to judge: 100 Deployments of 2 replicas
(their ReplicaSets and 200 Pending pods), 400 suspended Jobs, 400 suspended CronJobs and 1,000
bare pods bound to nodes (no kubelet runs, so nothing starts), a quarter of them with an H100
nodeSelector. Then `kubectl dra audit -A -o json`, each in a fresh process, 3 times (median):
the time of the command (after imports), the process wall time, API requests and peak RSS; and
`kubectl get pods -A -o json` for scale.

The cluster lives in `.cluster/bench` (shared with describe_bench) and is stopped afterwards
unless --keep; KUBECTL_DRA_REUSE_CLUSTER=1 reuses a populated one.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from bench.describe_bench import (
    MEASURE,
    MEASURE_KUBECTL,
    bench_args,
    bench_cluster,
    fakegpu,
    measure,
    parallel,
)

DEPLOYMENTS, JOBS, CRONJOBS, BARE_PODS = 100, 400, 400, 1000
NAMESPACE = "bench-legacy"
H100 = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}


def legacy_template(i: int) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [
            {
                "name": "train",
                "image": "nvidia/cuda",
                "resources": {"limits": {"nvidia.com/gpu": str(1 + i % 2)}},
            }
        ],
    }
    if i % 4 == 0:
        spec["nodeSelector"] = H100
    return {"metadata": {"labels": {"app": f"legacy-{i}"}}, "spec": spec}


def populate_legacy(api: Any, node_count: int) -> None:
    from kubernetes import client

    nodes = [n.name for n in fakegpu.scale_nodes(node_count)]
    core, apps, batch = client.CoreV1Api(api), client.AppsV1Api(api), client.BatchV1Api(api)
    core.create_namespace({"metadata": {"name": NAMESPACE}})
    deadline = time.monotonic() + 60
    while not core.list_namespaced_service_account(NAMESPACE).items:
        if time.monotonic() > deadline:
            raise SystemExit("the default ServiceAccount did not appear within 60 s")
        time.sleep(0.2)

    def deployment(i: int) -> None:
        template = legacy_template(i)
        template["spec"]["restartPolicy"] = "Always"
        selector = {"matchLabels": template["metadata"]["labels"]}
        body = {
            "metadata": {"name": f"dep-{i:04d}"},
            "spec": {"replicas": 2, "selector": selector, "template": template},
        }
        apps.create_namespaced_deployment(NAMESPACE, body)

    def job(i: int) -> None:
        spec = {"suspend": True, "template": legacy_template(i)}
        batch.create_namespaced_job(NAMESPACE, {"metadata": {"name": f"job-{i:04d}"}, "spec": spec})

    def cronjob(i: int) -> None:
        spec = {
            "schedule": "0 3 * * *",
            "suspend": True,
            "jobTemplate": {"spec": {"template": legacy_template(i)}},
        }
        batch.create_namespaced_cron_job(
            NAMESPACE, {"metadata": {"name": f"cron-{i:04d}"}, "spec": spec}
        )

    def pod(i: int) -> None:
        template = legacy_template(i)
        template["spec"]["nodeName"] = nodes[i % len(nodes)]
        template["spec"].pop("nodeSelector", None)  # bound directly; the selector is not checked
        core.create_namespaced_pod(
            NAMESPACE, {"metadata": {"name": f"pod-{i:04d}"}, "spec": template["spec"]}
        )

    parallel("legacy deployments", deployment, range(DEPLOYMENTS))
    parallel("suspended jobs", job, range(JOBS))
    parallel("suspended cronjobs", cronjob, range(CRONJOBS))
    parallel("bare legacy pods", pod, range(BARE_PODS))


def main() -> int:
    args = bench_args(__doc__ or "")
    with bench_cluster(args, populate_legacy) as cl:
        kubeconfig = str(cl.kubeconfig)
        audit = measure("audit -A -o json", MEASURE, kubeconfig, "audit", "-A", "-o", "json")
        table = measure("audit -A", MEASURE, kubeconfig, "audit", "-A")
        kubectl = measure(
            "kubectl get pods -A -o json",
            MEASURE_KUBECTL,
            str(cl.kubectl_path()),
            f"--kubeconfig={kubeconfig}",
            "get",
            "pods",
            "-A",
            "-o",
            "json",
        )

    print(
        f"cluster: {args.nodes} nodes x 8 GPUs, {args.claims} pods with allocated claims; legacy: "
        f"{DEPLOYMENTS} Deployments x 2, {JOBS} Jobs, {CRONJOBS} CronJobs, {BARE_PODS} bare pods; "
        "median of 3 fresh processes"
    )
    print(
        f"{'':32} {'command s':>9} {'process s':>9} {'requests':>8} {'peak RSS MiB':>12} {'x kubectl':>9}"
    )
    for label, m in (("kubectl dra audit -A -o json", audit), ("kubectl dra audit -A", table)):
        print(
            f"{label:32} {m['seconds']:9.2f} {m['wall']:9.2f} {int(m['requests']):8d} "
            f"{m['rss_mib']:12.0f} {m['wall'] / kubectl['wall']:9.2f}"
        )
    print(
        f"{'kubectl get pods -A -o json':32} {kubectl['seconds']:9.2f} {kubectl['wall']:9.2f} "
        f"{'-':>8} {kubectl['rss_mib']:12.0f} {1:9.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
