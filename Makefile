# Every target does its own set-up: a fresh clone needs only python3 (3.11+), go and make.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: help venv lint unit test e2e demo clean image bench-webhook bench-paths fuzz soak bench-slow-clients k8s-build node-build tools-build plugin cluster-up cluster-down cluster-status

help:
	@echo "make demo   - the main job: the GPU scenarios, legacy and native, on a local control plane"
	@echo "make test   - lint, type-check and run the whole test suite"
	@echo "make cluster-up / cluster-down / cluster-status - local control plane and one real node (python -m hack.cluster)"
	@echo "make bench-webhook - CPU per review, latency, memory and pod-creation cost vs targets (bench/)"
	@echo "make bench-paths - every route of a legacy GPU pod side by side: webhook, admission policy, native"
	@echo "make fuzz / soak / bench-slow-clients - the resilience suites (docs/deploy.md)"
	@echo "make e2e    - only the e2e tests (K8S_VERSION=1.34 or 1.34.4 selects another release)"
	@echo "make plugin - the single-file plugin dist/kubectl-dra and its krew archive (plugins/dra.yaml)"
	@echo "make image  - the webhook image from the Dockerfile (mmdebstrap + buildah), cached; used by the in-cluster e2e tests"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[webhook,test]'
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check dracore webhook kubectl_dra tests bench hack
	$(BIN)/ruff format --check dracore webhook kubectl_dra tests bench hack
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: $(STAMP)
	$(BIN)/pytest -m "not e2e" -q

# The Go build of the control plane (cached in ~/.cache/kubectl-dra/k8s/<version>) runs here, with
# progress on the terminal, rather than silently inside a pytest fixture.  Also the control plane
# of the oldest supported release (tests/e2e/test_k8s_134.py), without its kubelet.
k8s-build: $(STAMP)
	$(BIN)/python -m hack.k8s_build
	$(BIN)/python -m hack.k8s_build --oldest

# The real node's parts (containerd, the DRA plugin, images; apt-get runc, CNI, busybox-static
# when missing): hack/node_build.py, cached in ~/.cache/kubectl-dra/node.
node-build: k8s-build
	$(BIN)/python -m hack.node_build

# The webhook's image from the Dockerfile (hack/image.py: an mmdebstrap Debian base and buildah;
# cached in ~/.cache/kubectl-dra/image/), for tests/e2e/test_incluster.py's `helm install`.
image: $(STAMP)
	$(BIN)/python -m hack.image

# helm and promtool for the chart tests, built from the Go module proxy like the control plane
# (cached in ~/.cache/kubectl-dra/tools/; cold times in hack/README.md).
tools-build: $(STAMP)
	$(BIN)/python -m hack.go_tools

# The single-file plugin (a PEX zipapp of the plain install) that tests run through kubectl,
# with this machine's wheels only; `make plugin` builds the multi-platform release file.
PLUGIN_SOURCES := pyproject.toml hack/build_plugin.py $(shell find kubectl_dra dracore -name '*.py' -o -name '*.json')
dist/kubectl-dra: $(STAMP) $(PLUGIN_SOURCES)
	$(BIN)/pip install --quiet 'pex>=2.20'
	$(BIN)/python -m hack.build_plugin --no-manifest --this-platform

# Also writes the archive's sha256 into the krew manifest plugins/dra.yaml (a release step).
plugin: $(STAMP)
	$(BIN)/pip install --quiet 'pex>=2.20'
	$(BIN)/python -m hack.build_plugin

test: lint node-build tools-build image dist/kubectl-dra
	$(BIN)/pytest -q

e2e: node-build tools-build image dist/kubectl-dra
	$(BIN)/pytest -m e2e -q

cluster-up: node-build
	$(BIN)/python -m hack.cluster up --node

cluster-down:
	@if [ -x $(BIN)/python ]; then $(BIN)/python -m hack.cluster down; else echo "no venv: nothing was started"; fi

cluster-status: $(STAMP)
	$(BIN)/python -m hack.cluster status

# The server under load over HTTPS (installs oha or wrk if missing); see docs/deploy.md.
# CPU per review, latency at 500/s, memory and pod-creation ratios against their targets.
bench-webhook: $(STAMP) k8s-build
	$(BIN)/python -m bench.webhook_report

# Every route of a legacy GPU pod side by side on one control plane (bench/paths.py): creation
# rate and latency, a 200-pod burst's allocation tail, control-plane CPU per pod, and what is left
# behind when pods are refused after admission. About 8 minutes; writes bench/results/paths.json.
bench-paths: $(STAMP) k8s-build
	$(BIN)/python -m bench.paths

# 100,000 hostile AdmissionReviews through the webhook's endpoints (tests/app/test_fuzz_reviews.py);
# prints the count and the slowest review.
fuzz: $(STAMP)
	FUZZ_EXAMPLES=100000 $(BIN)/pytest -q -s tests/app/test_fuzz_reviews.py

# The real server over HTTPS for 60 s at 1,000 reviews/s while its certificate rotates, its
# policy is edited, a worker is killed and 40 slow-loris connections are held (bench/soak.py).
soak: $(STAMP)
	$(BIN)/python -m bench.soak

# Stalled handshakes, headers and bodies, and a burst of 32 new connections (bench/slow_clients.py).
bench-slow-clients: $(STAMP)
	$(BIN)/python -m bench.slow_clients

demo: node-build
	$(BIN)/python -m hack.demo

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
