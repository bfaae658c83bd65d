"""The local cluster: the control plane, our webhook and the real node, and their command line.

    python -m hack.cluster up [--node]   # build (cached), start, apply simulated GPU nodes
    python -m hack.cluster status
    python -m hack.cluster down          # stop only what `up` started (pid files), free the ports
    python -m hack.cluster node-up | node-down | webhook-up | webhook-down | kubeconfig

The parts live apart: processes and pid files (procs.py), certificates (pki.py), component
command lines (components.py), the control plane's lifecycle (controlplane.py), the simulated
GPU nodes (fakegpu.py, fixtures.py), our webhook (webhook_lifecycle.py) and the real node
(node.py).  This module is the one that knows all of them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from hack import webhook_lifecycle
from hack.controlplane import ControlPlane
from hack.node import NodeError, RealNode
from hack.procs import ClusterError
from hack.webhook_lifecycle import INSTANCE_LABEL


class Cluster(ControlPlane):
    """A control plane with our webhook instances and, when started, the real node."""

    def down(self, *, quiet: bool = False, out: TextIO = sys.stderr) -> None:
        """Stop the real nodes first (they drain through the API server), then the rest."""
        for node in reversed(RealNode.existing(self)):
            node.down(quiet=quiet, out=out)
        super().down(quiet=quiet, out=out)

    def webhook_dir(self, name: str) -> Path:
        return self.paths.webhook(name)

    # Our webhook instances (hack/webhook_lifecycle.py), as methods of the cluster they run on.
    webhook_up = webhook_lifecycle.start
    webhook_register = webhook_lifecycle.register
    webhook_unregister = webhook_lifecycle.deregister
    webhook_down = webhook_lifecycle.stop
    https_ok = webhook_lifecycle.https_ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hack.cluster", description="local Kubernetes control plane for kubectl-dra"
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_up = sub.add_parser("up", help="build (cached) and start; apply simulated GPU nodes")
    p_up.add_argument(
        "--no-fixtures", action="store_true", help="do not create nodes/slices/classes"
    )
    p_up.add_argument("--node", action="store_true", help="also start the real node (node-up)")
    p_node = sub.add_parser("node-up", help="start a real node (kubelet, containerd, DRA plugin)")
    p_node.add_argument(
        "--index", type=int, default=0, help="another node: 1, 2, ... (named <host>-<index>)"
    )
    sub.add_parser("node-down", help="stop the real nodes and remove what they left behind")
    sub.add_parser("down", help="stop what `up` started")
    sub.add_parser("status", help="show component state")
    sub.add_parser("kubeconfig", help="print the admin kubeconfig path")
    p_wh = sub.add_parser("webhook-up", help="serve our webhook on loopback and register it")
    p_wh.add_argument("--name", default="default")
    p_wh.add_argument("--policy", type=Path, help="GPUPolicy file (default: the built-in policy)")
    p_wh.add_argument("--failure-policy", choices=["Fail", "Ignore"], default="Fail")
    p_wh.add_argument(
        "--namespace-label",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"only namespaces with this label (repeatable); default: instance 'default' serves "
        f"namespaces without {INSTANCE_LABEL}, others those with {INSTANCE_LABEL}=<name>",
    )
    p_whd = sub.add_parser("webhook-down", help="stop our webhook and unregister it")
    p_whd.add_argument("--name", default="default")
    p_whd.add_argument("--keep-registration", action="store_true", help="leave the config in place")
    args = parser.parse_args(argv)
    cluster = Cluster()
    try:
        if args.cmd == "up":
            cluster.up(fixtures=not args.no_fixtures)
            if args.node:
                RealNode(cluster).up()
        elif args.cmd == "node-up":
            RealNode(cluster, args.index).up()
        elif args.cmd == "node-down":
            for node in reversed(RealNode.existing(cluster)):
                node.down()
        elif args.cmd == "down":
            cluster.down()
            # Clusters of interrupted test or bench runs live in sub-directories.
            for state in sorted(cluster.paths.root.glob("*/state.json")):
                Cluster(state.parent).down()
        elif args.cmd == "status":
            return 0 if cluster.status() else 1
        elif args.cmd == "kubeconfig":
            print(cluster.kubeconfig)
        elif args.cmd == "webhook-up":
            labels = dict(item.split("=", 1) for item in args.namespace_label)
            cluster.webhook_up(
                args.name,
                policy=args.policy,
                failure_policy=args.failure_policy,
                namespace_selector={"matchLabels": labels} if labels else None,
            )
        elif args.cmd == "webhook-down":
            cluster.webhook_down(args.name, unregister=not args.keep_registration)
    except (ClusterError, NodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
