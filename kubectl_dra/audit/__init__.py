"""`kubectl dra audit`: what switching the webhook to Enforce would do to the workloads already
in the cluster, and whether DRA has the devices for them (pure, apart from `report.read_cluster`
which goes through a reader).

workloads.py finds each owner of pods once; registrations.py says whether the live webhook
registration would send its pods at all; decide.py runs the webhook's translation on its pod
template; matching.py + readiness.py count devices (dracore/capacity.py, dracore/demand.py)
and produce the readiness findings; report.py joins them; render.py prints them.
"""
