"""kubectl-dra webhook: rewrites legacy `nvidia.com/gpu` pods into DRA ResourceClaimTemplate references.

The pure model is the top-level package `dracore`. Here: `admission` (the decision for one review
and what it needs created first), `serving` (HTTP/1.1 server, processes, TLS, routes, reload,
logs, metrics), `apiclient` (the serving path's API calls), `ops` (certificates) and `cli`.
"""
