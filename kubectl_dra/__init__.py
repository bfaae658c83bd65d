"""kubectl-dra: a kubectl plugin to see, check and convert Kubernetes DRA GPU workloads."""
