"""The GPUPolicy compiled to admission policies the API server runs itself (Kubernetes 1.36+).

Where the scheduler's extended-resource path (KEP-5004) gives a pod what the webhook would give
it, the pod only needs its legacy resource renamed to the implicit name of the generated
DeviceClass carrying its namespace's sharing (`deviceclass.resource.kubernetes.io/<class>`,
see dracore.classes). A MutatingAdmissionPolicy does that inside the API server, with no
network hop; a ValidatingAdmissionPolicy holds the policy's `maxGPUsPerPod` on every pod that
names one of the policy's classes, which pods can also write by hand.

`compile_route(policy, classes)` returns an `InProcessRoute`: its `manifests` (one mutating and
one validating policy per namespace rule, bound to the namespaces the rule selects), and the
same decisions as Python (`handles`, `apply`, `denial`) so that tests compare the compiled route
with the webhook's rewrite. Everything the route does not handle keeps its legacy resource and
reaches the webhook, which the API server calls after the mutating policies:
`webhook_match_conditions` says why that is already the exact complement.

Nothing a pod author writes is evaluated or pasted into CEL: resource, class, label and namespace
names from the policy enter expressions only as literals made by `cel.string_literal`; values
from the pod are only compared, matched against fixed patterns, or copied as data.

Modules: `route` (the InProcessRoute and its decisions in Python), `compile` (policy + classes ->
route), `expressions` (the CEL), `manifests` (policies and bindings).
"""

from dracore.admission_policies.compile import compile_install, compile_route
from dracore.admission_policies.expressions import (
    asks_for_legacy_resources,
    handled_conditions,
    legacy_predicate,
    webhook_match_conditions,
)
from dracore.admission_policies.route import (
    IN_PROCESS_FROM,
    INDEXED_CONTAINERS,
    InProcessRoute,
    Limits,
    Scope,
    serves_admission_policies,
)

__all__ = [
    "INDEXED_CONTAINERS",
    "IN_PROCESS_FROM",
    "InProcessRoute",
    "Limits",
    "Scope",
    "asks_for_legacy_resources",
    "compile_install",
    "compile_route",
    "handled_conditions",
    "legacy_predicate",
    "serves_admission_policies",
    "webhook_match_conditions",
]
