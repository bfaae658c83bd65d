"""Tooling around the project: the local control plane and real node (`python -m hack.cluster`),
Go builds of upstream binaries, the demo, and the single-file plugin build.  Never imported by
dracore, webhook or kubectl_dra."""
