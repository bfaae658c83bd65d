"""The webhook's own client of the Kubernetes API, for the few calls the serving path makes."""
