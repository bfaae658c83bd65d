"""kubectl-dra webhook: rewrites legacy `nvidia.com/gpu` pods into DRA ResourceClaimTemplate references.

The pure core is `webhook.core`; `http11`/`endpoints`/`reviewer` (HTTP), `kubeapi` (the API),
`app`/`routes` (the same endpoints in Flask) and `cli` (click) are thin adapters around it.
"""
