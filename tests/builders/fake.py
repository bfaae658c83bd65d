"""FakeCluster: the ClusterReader Protocol over lists of dicts, for describe and validate."""

from __future__ import annotations

import copy
import json
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from dracore.translate import REWRITTEN_ANNOTATION
from kubectl_dra.errors import NotFoundError
from kubectl_dra.report import EXTENDED_RESOURCE_CLAIM_ANNOTATION, POD_CLAIM_NAME_ANNOTATION
from tests.builders.dra import (
    H100,
    cluster_claim,
    example_slice,
    make_class,
    make_device,
    make_slice,
    result,
    sharing_config,
)
from tests.builders.pods import claim_ref, cluster_pod, template_ref


class FakeCluster:
    """ClusterReader over lists; records each call; `error` is raised by every call.

    `forbidden` names calls that must never happen (validate's reader forbids reading pods
    and nodes, and getting single claims): they fail the test with an AssertionError.
    """

    def __init__(
        self,
        *,
        pods: Sequence[Mapping[str, Any]] = (),
        claims: Sequence[Mapping[str, Any]] = (),
        slices: Sequence[Mapping[str, Any]] = (),
        device_classes: Sequence[Mapping[str, Any]] = (),
        templates: Sequence[Mapping[str, Any]] = (),
        namespace: str = "ns",
        error: Exception | None = None,
        forbidden: Collection[str] = (),
    ) -> None:
        self.pods = [copy.deepcopy(dict(p)) for p in pods]
        self.claims = [copy.deepcopy(dict(c)) for c in claims]
        self.slices = [copy.deepcopy(dict(s)) for s in slices]
        self.device_classes = [copy.deepcopy(dict(c)) for c in device_classes]
        self.templates = [copy.deepcopy(dict(t)) for t in templates]
        self.namespace = namespace
        self.error = error
        self.forbidden = frozenset(forbidden)
        self.calls: list[str] = []

    @property
    def default_namespace(self) -> str:
        return self.namespace

    @property
    def requests(self) -> int:
        """API round trips, like KubeGateway.requests."""
        return len(self.calls)

    def _call(self, what: str) -> None:
        if what in self.forbidden:
            raise AssertionError(f"this command must not {what}")
        self.calls.append(what)
        if self.error is not None:
            raise self.error

    @staticmethod
    def _in(objs: list[dict[str, Any]], namespace: str | None) -> list[dict[str, Any]]:
        return [
            copy.deepcopy(o)
            for o in objs
            if namespace is None or o["metadata"].get("namespace") == namespace
        ]

    def list_pods(
        self, namespace: str | None, *, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        self._call("list pods")
        pods = self._in(self.pods, namespace)
        if label_selector:
            wanted = dict(term.split("=", 1) for term in label_selector.split(","))
            pods = [
                p
                for p in pods
                if all((p["metadata"].get("labels") or {}).get(k) == v for k, v in wanted.items())
            ]
        return pods

    def _get(self, kind: str, objs: list[dict[str, Any]], namespace: str, name: str) -> Any:
        self._call(f"get {kind}")
        for obj in self._in(objs, namespace):
            if obj["metadata"]["name"] == name:
                return obj
        raise NotFoundError(f"cannot get {kind} {name} in namespace {namespace}: not found")

    def get_pod(self, namespace: str, name: str) -> dict[str, Any]:
        pod: dict[str, Any] = self._get("pod", self.pods, namespace, name)
        return pod

    def list_resource_claims(self, namespace: str | None) -> list[dict[str, Any]]:
        self._call("list resourceclaims")
        return self._in(self.claims, namespace)

    def get_resource_claim(self, namespace: str, name: str) -> dict[str, Any]:
        claim: dict[str, Any] = self._get("resourceclaim", self.claims, namespace, name)
        return claim

    def list_resource_claim_templates(self, namespace: str | None) -> list[dict[str, Any]]:
        self._call("list resourceclaimtemplates")
        return self._in(self.templates, namespace)

    def list_resource_slices(self) -> list[dict[str, Any]]:
        self._call("list resourceslices")
        return copy.deepcopy(self.slices)

    def list_device_classes(self) -> list[dict[str, Any]]:
        self._call("list deviceclasses")
        return copy.deepcopy(self.device_classes)

    def list_nodes(self) -> list[dict[str, Any]]:
        self._call("list nodes")
        return []


# What `kubectl dra validate --cluster` may read: four lists, never pods, nodes or single claims.
VALIDATE_FORBIDS = ("list pods", "get pod", "list nodes", "get resourceclaim")


def validate_cluster(
    *,
    device_classes: Sequence[Mapping[str, Any]] | None = None,
    resource_slices: Sequence[Mapping[str, Any]] | None = None,
    resource_claims: Sequence[Mapping[str, Any]] = (),
    resource_claim_templates: Sequence[Mapping[str, Any]] = (),
    default_namespace: str = "default",
) -> FakeCluster:
    """The example driver's cluster: class gpu.example.com, nodes node-a and node-b of 4 devices;
    any read validate must never make fails the test."""
    return FakeCluster(
        device_classes=[make_class()] if device_classes is None else device_classes,
        slices=(
            [example_slice("node-a"), example_slice("node-b")]
            if resource_slices is None
            else resource_slices
        ),
        claims=resource_claims,
        templates=resource_claim_templates,
        namespace=default_namespace,
        forbidden=VALIDATE_FORBIDS,
    )


def sample_cluster() -> FakeCluster:
    """One of each: template claim (2 GPUs), named claim shared by two pods, a KEP-5004 claim,
    a time-sliced claim, a pod rewritten by our webhook, a pending pod; two nodes."""
    slices = [
        make_slice("node-0", [make_device(f"gpu-{i}", uuid=f"GPU-0-{i}") for i in range(4)]),
        make_slice(
            "node-1", [make_device(f"gpu-{i}", product=H100, uuid=f"GPU-1-{i}") for i in range(2)]
        ),
    ]
    multi = cluster_pod(
        "multi",
        resource_claims=[template_ref("gpus", "two-gpus")],
        containers={"ctr0": [{"name": "gpus"}]},
        claim_statuses={"gpus": "multi-gpus-abcde"},
    )
    sharers = [
        cluster_pod(
            n,
            resource_claims=[claim_ref("shared", "team-gpu")],
            containers={"c": [{"name": "shared"}]},
        )
        for n in ("share-a", "share-b")
    ]
    legacy = cluster_pod(
        "legacy",
        extended={
            "resourceClaimName": "legacy-extended-resources-x",
            "requestMappings": [
                {
                    "containerName": "ctr0",
                    "resourceName": "nvidia.com/gpu",
                    "requestName": "container-0-request-0",
                }
            ],
        },
    )
    sliced = cluster_pod(
        "sliced",
        node="node-1",
        resource_claims=[template_ref("gpu", "ts")],
        containers={"a": [{"name": "gpu"}], "b": [{"name": "gpu"}]},
        claim_statuses={"gpu": "sliced-gpu-1"},
    )
    record = {
        "policy": "0123456789ab",
        "sharing": "Exclusive",
        "claim": "gpu",
        "template": "kubectl-dra-aaaa",
        "containers": [
            {"container": "train", "resource": "nvidia.com/gpu", "count": 1, "requests": ["gpu"]}
        ],
    }
    rewritten = cluster_pod(
        "rewritten",
        node="node-1",
        resource_claims=[template_ref("gpu", "kubectl-dra-aaaa")],
        containers={"train": [{"name": "gpu", "request": "gpu"}]},
        claim_statuses={"gpu": "rewritten-gpu-1"},
        annotations={REWRITTEN_ANNOTATION: json.dumps(record)},
        labels={"app": "train"},
    )
    waiting = cluster_pod(
        "waiting",
        node=None,
        resource_claims=[template_ref("gpu", "big")],
        containers={"c": [{"name": "gpu"}]},
        claim_statuses={"gpu": "waiting-gpu-1"},
    )
    plain = cluster_pod("web", containers={"nginx": []})
    claims = [
        cluster_claim(
            "multi-gpus-abcde",
            requests=["gpu-1", "gpu-2"],
            owner=multi,
            annotations={POD_CLAIM_NAME_ANNOTATION: "gpus"},
            results=[result("gpu-1", "gpu-0"), result("gpu-2", "gpu-1")],
            reserved_for=[multi],
        ),
        cluster_claim("team-gpu", results=[result("gpu", "gpu-2")], reserved_for=sharers),
        cluster_claim(
            "legacy-extended-resources-x",
            requests=["container-0-request-0"],
            owner=legacy,
            annotations={EXTENDED_RESOURCE_CLAIM_ANNOTATION: "true"},
            results=[result("container-0-request-0", "gpu-3")],
            reserved_for=[legacy],
        ),
        cluster_claim(
            "sliced-gpu-1",
            owner=sliced,
            annotations={POD_CLAIM_NAME_ANNOTATION: "gpu"},
            node="node-1",
            results=[result("gpu", "gpu-0", pool="node-1")],
            config=[sharing_config("TimeSlicing")],
            reserved_for=[sliced],
        ),
        cluster_claim(
            "rewritten-gpu-1",
            owner=rewritten,
            annotations={POD_CLAIM_NAME_ANNOTATION: "gpu"},
            node="node-1",
            results=[result("gpu", "gpu-1", pool="node-1")],
            reserved_for=[rewritten],
        ),
        cluster_claim(
            "waiting-gpu-1", owner=waiting, annotations={POD_CLAIM_NAME_ANNOTATION: "gpu"}, count=8
        ),
    ]
    pods = [multi, *sharers, legacy, sliced, rewritten, waiting, plain]
    return FakeCluster(pods=pods, claims=claims, slices=slices)
