"""`kubectl dra validate`, the pure part: manifests (and an optional cluster snapshot) -> findings.

The rules, each in its own module:
1. Structure (`schema`): the resource.k8s.io/v1 shape, checked against the API's OpenAPI
   definitions copied into `schemas/resource-v1.json` by `hack/gen_dra_schema.py` (unknown
   fields, types, required fields), plus the one-of rules the schema cannot say (`exactly` vs
   `firstAvailable`, allocationMode and count).
2. The API server's limits (`claims`): DNS names, at most 32 requests / selectors / configs /
   constraints, count > 0, counts above 32 that can never be allocated, opaque parameters an
   object of at most 10 KiB, CEL at most 10 KiB.
3. Cross references between pods, templates and claims, from the input or the cluster (`pods`).
4. CEL selectors: parsed, checked against `device` and costed (`kubectl_dra.celcheck`).
5. With a cluster snapshot (`cluster`): classes exist, selectors evaluated on every published
   device, whether one node can satisfy each request; NVIDIA sharing configs need driver gates.
6. Legacy `nvidia.com/gpu` pods: an info finding pointing at `kubectl dra convert` (`pods`).

`rules` says which rule applies to which object and runs them; `output` formats the findings.
Objects of other kinds (Namespace, ConfigMap, Service, ...) are skipped: they are not ours to
check and `kubectl apply` validates them. Nothing here talks to the API server.
"""

from __future__ import annotations

from dracore.dra import object_ref
from kubectl_dra.validate.cluster import ClusterSnapshot
from kubectl_dra.validate.findings import Finding, Severity
from kubectl_dra.validate.output import format_findings, has_errors, summarize
from kubectl_dra.validate.rules import RULES, Rule, is_checked, validate_documents
from kubectl_dra.validate.schema import check_schema

__all__ = [
    "RULES",
    "ClusterSnapshot",
    "Finding",
    "Rule",
    "Severity",
    "check_schema",
    "format_findings",
    "has_errors",
    "is_checked",
    "object_ref",
    "summarize",
    "validate_documents",
]
