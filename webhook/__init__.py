"""kubectl-dra webhook: rewrites legacy `nvidia.com/gpu` pods into DRA ResourceClaimTemplate references.

The pure core is `policy`, `translate` and `review`; `app`/`routes` (Flask), `kube` (the API)
and `cli` (click) are thin adapters around it.
"""
