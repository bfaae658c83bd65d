"""The policy ConfigMap, refused at `kubectl apply` when the webhook could not load it (pure).

A validating webhook route hands the decoded AdmissionReview of a ConfigMap to `review_policy`
and sends back what it returns. The judgement is the loader's own (dracore.policy.PolicyCheck,
the code the webhook runs when it reloads the mounted file), so an edit is refused at apply
time with exactly the problems reload would log, instead of being accepted and then ignored.
Warnings of a valid policy go back as admission warnings (kubectl prints them).

Only CREATE and UPDATE are judged; DELETE and CONNECT are allowed (the webhook then keeps the
policy it last loaded). Which ConfigMaps are sent is the registration's business: its
matchConditions select the policy ConfigMap by namespace and name (docs/policy.md).
"""

from __future__ import annotations

from typing import Any

from dracore import admission_review as review
from dracore.policy import PolicyCheck


def review_policy(body: Any) -> review.AdmissionReviewOut:
    """The AdmissionReview answer for a ConfigMap holding a GPUPolicy.

    Raises BadReviewError when the review itself is broken (HTTP 400, as for /mutate).
    """
    request = review.parse_request(body)
    if request.operation not in ("CREATE", "UPDATE"):
        return review.build_allowed(request.uid)
    where = f"ConfigMap {request.namespace}/{request.name}" if request.namespace else "ConfigMap"
    check = PolicyCheck.of(request.object, source=where)
    if check.errors:
        return review.build_denied(request.uid, check.message())
    return review.build_allowed(request.uid, warnings=[w.to_text() for w in check.warnings])
