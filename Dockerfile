# The webhook image: `docker build -t kubectl-dra/webhook:0.1.0 .`
# Stage 1 builds a wheel and installs it with its dependencies into a venv; stage 2 copies only
# that venv onto a slim Python base: no compiler, no pip cache, no source tree, a non-root user.
# (Every dependency ships manylinux wheels, so stage 1 needs no build tools either; it is still a
# separate stage so that pip and the build backend stay out of the final image.)
# BASE is any Debian-like image with python3 (3.11+, with venv) as `python`: the official slim
# image by default; hack/image.py passes one it makes from Debian packages, since no registry is
# reachable where the tests run. The same file builds both.
ARG BASE=python:3.11-slim

FROM ${BASE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY dracore ./dracore
COPY webhook ./webhook
COPY kubectl_dra ./kubectl_dra
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --upgrade pip \
 && /opt/venv/bin/pip wheel --no-deps --wheel-dir /wheels . \
 && /opt/venv/bin/pip install "$(ls /wheels/*.whl)[webhook]" \
 && /opt/venv/bin/pip uninstall -y pip setuptools wheel \
 && find /opt/venv -name '__pycache__' -prune -exec rm -rf {} + \
 && /opt/venv/bin/python -m compileall -q -j 0 --invalidation-mode unchecked-hash /opt/venv

FROM ${BASE}
# Drop pip from the runtime image too: nothing is installed at run time.
RUN python -m pip uninstall -y pip setuptools wheel 2>/dev/null || true \
 && groupadd --gid 65532 webhook \
 && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin webhook
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 65532:65532
EXPOSE 9443
# The root filesystem is read-only in the Deployment; /tmp is an emptyDir there.
ENTRYPOINT ["dra-webhook"]
CMD ["serve", "--cert-dir=/etc/kubectl-dra/tls", "--policy=/etc/kubectl-dra/policy/policy.yaml"]
