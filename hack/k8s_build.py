#!/usr/bin/env python3
"""Build a pinned Kubernetes control plane (and a matching etcd) from the Go module proxy.

Why from the module proxy: this project's CI and dev machines reach PyPI, the Go module proxy
and distro mirrors, but not GitHub releases, dl.k8s.io or container registries.  The proxy
serves `k8s.io/kubernetes` itself; its go.mod points every `k8s.io/*` staging module at
`./staging/src/...` (published at v0.0.0), so we generate a tiny module that requires
`k8s.io/kubernetes vX.Y.Z` and replaces each staging module with its published `v0.Y.Z` tag.

Why etcd from the same module graph (and not Debian's etcd-server): k8s.io/kubernetes' go.mod
pins `go.etcd.io/etcd/server/v3` (indirectly, for its integration tests), and that module's root
package is etcd's `main`.  Building it in the same module gives exactly the etcd version the
release was tested with, on every distro, with no root/apt needed; Debian's etcd lags the
versions the API server's storage layer expects.

Binaries land in `$XDG_CACHE_HOME/kubectl-dra/k8s/<version>/bin/` (default `~/.cache/...`)
and are rebuilt only when missing.  `K8S_VERSION` picks the release (default: DEFAULT_VERSION).

Usage: python -m hack.k8s_build [--version 1.37.2] [--control-plane-only] [--print-bin-dir]
       python -m hack.k8s_build --oldest   # OLDEST_VERSION's control plane
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TextIO

# Newest stable release the Go proxy served when this was pinned (`go list -m -versions
# k8s.io/kubernetes`).  Bump deliberately: e2e expectations depend on DRA API behaviour.
DEFAULT_VERSION = "1.37.2"
# The oldest release the project supports (DRA's resource.k8s.io/v1 is GA from 1.34); the e2e
# suite runs tests/e2e/test_k8s_134.py on its control plane.  `--oldest` builds it.
OLDEST_VERSION = "1.34.4"

# (binary name, Go package).  etcd first: small, and a quick check that the toolchain works.
BINARIES: tuple[tuple[str, str], ...] = (
    ("etcd", "go.etcd.io/etcd/server/v3"),
    ("kube-apiserver", "k8s.io/kubernetes/cmd/kube-apiserver"),
    ("kube-controller-manager", "k8s.io/kubernetes/cmd/kube-controller-manager"),
    ("kube-scheduler", "k8s.io/kubernetes/cmd/kube-scheduler"),
    ("kubectl", "k8s.io/kubernetes/cmd/kubectl"),
    # The real node (hack/node.py); last, so the control plane is usable first.
    ("kubelet", "k8s.io/kubernetes/cmd/kubelet"),
    # Services on the real nodes (hack/node_net.py): iptables rules in each node's netns.
    ("kube-proxy", "k8s.io/kubernetes/cmd/kube-proxy"),
)

# What a control plane alone needs (hack/controlplane.py): no real node, so no kubelet or
# kube-proxy; a secondary release is built with only these to keep a cold set-up short.
CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")

# Measured cold (empty GOMODCACHE and GOCACHE): 7.3 min on 2 cores for v1.37.2; shown so nobody
# kills the build.
COLD_BUILD_MINUTES = "8-15"

_STAGING_RE = re.compile(r"^\s*(k8s\.io/[A-Za-z0-9._-]+)\s*=>\s*\./staging/src/\S+\s*$")


def normalize_version(version: str) -> str:
    """Return `X.Y.Z` for `vX.Y.Z` / `X.Y.Z`; reject anything else early with a clear error."""
    v = version.strip().removeprefix("v")
    if not re.fullmatch(r"1\.\d+\.\d+", v):
        raise SystemExit(f"K8S_VERSION must look like 1.37.2, got {version!r}")
    return v


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kubectl-dra" / "k8s"


def version_dir(version: str) -> Path:
    return cache_root() / normalize_version(version)


def bin_dir(version: str | None = None) -> Path:
    return version_dir(version or selected_version()) / "bin"


@functools.cache
def resolve_version(version: str) -> str:
    """`1.34` -> the newest `1.34.Z` the module proxy serves; full versions are only checked."""
    minor = version.strip().removeprefix("v")
    if not re.fullmatch(r"1\.\d+", minor):
        return normalize_version(version)
    with tempfile.TemporaryDirectory() as tmp:
        out = _run(
            ["go", "list", "-m", "-versions", "k8s.io/kubernetes"], cwd=Path(tmp), env=go_env()
        )
    patches = [
        int(v.rsplit(".", 1)[1])
        for v in out.split()[1:]
        if re.fullmatch(rf"v{re.escape(minor)}\.\d+", v)
    ]
    if not patches:
        raise SystemExit(
            f"Kubernetes {version}: the module proxy serves no {minor}.x release of k8s.io/kubernetes"
        )
    return f"{minor}.{max(patches)}"


def selected_version() -> str:
    """K8S_VERSION (`1.34.4`, or `1.34` for its newest patch release), else DEFAULT_VERSION."""
    return resolve_version(os.environ.get("K8S_VERSION") or DEFAULT_VERSION)


def is_built(version: str, only: Sequence[str] | None = None) -> bool:
    """Whether every binary (or every one named in `only`) is in the cache."""
    bdir = bin_dir(version)
    return all(os.access(bdir / name, os.X_OK) for name in only or [n for n, _ in BINARIES])


def go_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("GOPROXY", "https://proxy.golang.org,direct")
    # -mod=mod: let `go build` record requirements/sums in our generated module (no tidy pass);
    # -buildvcs=false: the generated module is not a VCS checkout.
    flags = env.get("GOFLAGS", "").split()
    for flag in ("-mod=mod", "-buildvcs=false"):
        if flag not in flags:
            flags.append(flag)
    env["GOFLAGS"] = " ".join(flags)
    env.setdefault("CGO_ENABLED", "0")  # static binaries, no C toolchain needed
    return env


def _run(cmd: list[str], *, cwd: Path, env: dict[str, str], log: Path | None = None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if log is not None:
        with log.open("a") as fh:
            fh.write(f"$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}\n")
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{tail}")
    return proc.stdout


def staging_modules(kubernetes_gomod: str) -> list[str]:
    """Names of the `k8s.io/*` modules k8s.io/kubernetes replaces with ./staging/src paths."""
    return sorted(
        {m.group(1) for line in kubernetes_gomod.splitlines() if (m := _STAGING_RE.match(line))}
    )


def go_directive(gomod: str) -> str:
    m = re.search(r"^go\s+(\S+)\s*$", gomod, re.M)
    return m.group(1) if m else "1.22"


def write_module(src: Path, *, version: str, kubernetes_gomod: str, published: set[str]) -> None:
    """Generate go.mod for a module that only exists to build release binaries."""
    staging_version = "v0." + version.split(".", 1)[1]
    replaces = "\n".join(
        f"\t{mod} => {mod} {staging_version}"
        for mod in staging_modules(kubernetes_gomod)
        if mod in published
    )
    src.mkdir(parents=True, exist_ok=True)
    (src / "go.mod").write_text(
        "// Generated by hack/k8s_build.py: builds Kubernetes release binaries.\n"
        "module kubectl-dra.local/k8sbuild\n\n"
        f"go {go_directive(kubernetes_gomod)}\n\n"
        f"require k8s.io/kubernetes v{version}\n\n"
        f"replace (\n{replaces}\n)\n"
    )
    # A package of our own keeps `go` from complaining the module is empty.
    (src / "doc.go").write_text(
        "// Package k8sbuild only pins build dependencies.\npackage k8sbuild\n"
    )


def download_json(mods: list[str], *, cwd: Path, env: dict[str, str]) -> list[dict[str, object]]:
    """`go mod download -json` for several modules; errors per module come back in "Error"."""
    proc = subprocess.run(
        ["go", "mod", "download", "-json", *mods], cwd=cwd, env=env, capture_output=True, text=True
    )
    decoder = json.JSONDecoder()
    out, text, pos = [], proc.stdout, 0
    while pos < len(text):
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            break
        obj, pos = decoder.raw_decode(text, pos)
        out.append(obj)
    if not out:
        raise SystemExit(f"go mod download failed: {proc.stderr.strip()[-2000:]}")
    return out


def ldflags(version: str) -> str:
    major, minor, _ = version.split(".")
    # Without these the binaries report v0.0.0-master, which upsets kubectl's skew check and
    # makes `kubectl version` useless in bug reports.
    xs = {
        "gitVersion": f"v{version}",
        "gitMajor": major,
        "gitMinor": minor,
        "gitTreeState": "clean",
        "buildDate": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    parts = ["-s", "-w"]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        parts += [f"-X '{pkg}.{key}={val}'" for key, val in xs.items()]
    return " ".join(parts)


@contextlib.contextmanager
def cache_lock(directory: Path, *, out: TextIO = sys.stderr) -> Iterator[None]:
    """Hold an exclusive lock on a cache directory while building into it.

    Two checkouts on one machine (a dev cluster and a test run, say) share the cache; without the
    lock both would build the same binaries at once and race on renaming them into place.
    """
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"  waiting for another build into {directory} ...", file=out, flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def build(
    version: str,
    *,
    force: bool = False,
    only: Sequence[str] | None = None,
    out: TextIO = sys.stderr,
) -> Path:
    """Build (or reuse) all binaries for `version`, or those named in `only`; return the bin dir."""
    version = normalize_version(version)
    unknown = sorted(set(only or ()) - {name for name, _ in BINARIES})
    if unknown:
        raise SystemExit(f"not a binary hack/k8s_build.py builds: {', '.join(unknown)}")
    if is_built(version, only) and not force:
        return bin_dir(version)
    with cache_lock(version_dir(version), out=out):
        if is_built(version, only) and not force:
            return bin_dir(version)  # another process finished it while we waited
        return _build_unlocked(version, force=force, only=only, out=out)


def _build_unlocked(version: str, *, force: bool, only: Sequence[str] | None, out: TextIO) -> Path:
    bdir = bin_dir(version)
    if shutil.which("go") is None:
        raise SystemExit(
            "`go` is not on PATH: install Go (>= the release's go directive) to build Kubernetes"
        )
    vdir = version_dir(version)
    src = vdir / "src"
    log = vdir / "build.log"
    vdir.mkdir(parents=True, exist_ok=True)
    bdir.mkdir(parents=True, exist_ok=True)
    env = go_env()
    started = time.monotonic()
    print(
        f"building Kubernetes v{version} control plane into {bdir}\n"
        f"  (cold build from the Go module proxy; this usually takes {COLD_BUILD_MINUTES} minutes "
        f"on 2 cores, later runs reuse the cache; log: {log})",
        file=out,
        flush=True,
    )

    # 1. k8s.io/kubernetes' own go.mod tells us the staging modules and the Go version.
    scratch = vdir / "probe"
    scratch.mkdir(exist_ok=True)
    (scratch / "go.mod").write_text("module probe\n")
    info = download_json([f"k8s.io/kubernetes@v{version}"], cwd=scratch, env=env)[0]
    if info.get("Error"):
        raise SystemExit(
            f"k8s.io/kubernetes v{version} not available from the proxy: {info['Error']}"
        )
    kubernetes_gomod = Path(str(info["GoMod"])).read_text()
    staging = staging_modules(kubernetes_gomod)
    staging_version = "v0." + version.split(".", 1)[1]

    # 2. Only replace staging modules that are actually published at v0.Y.Z (new, unpublished
    #    ones are not needed by the commands we build; replacing them would fail the build).
    results = download_json([f"{m}@{staging_version}" for m in staging], cwd=scratch, env=env)
    published = {str(r["Path"]) for r in results if not r.get("Error")}
    missing = sorted(set(staging) - published)
    if missing:
        print(f"  note: not published at {staging_version}: {', '.join(missing)}", file=out)
    write_module(src, version=version, kubernetes_gomod=kubernetes_gomod, published=published)
    print(f"  module ready ({time.monotonic() - started:.0f}s)", file=out, flush=True)

    # 3. One `go build` per binary: progress and per-binary timings; the shared GOCACHE makes
    #    the later ones cheap.
    timings: dict[str, float] = {}
    for name, pkg in BINARIES:
        if only is not None and name not in only:
            continue
        if os.access(bdir / name, os.X_OK) and not force:
            continue  # e.g. a cache made before the kubelet joined BINARIES
        t0 = time.monotonic()
        print(f"  go build {name} ...", file=out, flush=True)
        tmp = bdir / f".{name}.tmp"
        _run(
            ["go", "build", "-trimpath", f"-ldflags={ldflags(version)}", "-o", str(tmp), pkg],
            cwd=src,
            env=env,
            log=log,
        )
        tmp.replace(bdir / name)
        timings[name] = time.monotonic() - t0
        print(f"  built {name} in {timings[name]:.0f}s", file=out, flush=True)
    total = time.monotonic() - started
    (vdir / "build-times.json").write_text(json.dumps({"total": total, **timings}, indent=2) + "\n")
    print(f"done: Kubernetes v{version} in {total / 60:.1f} min -> {bdir}", file=out, flush=True)
    return bdir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--version",
        default=None,
        help=f"Kubernetes release (env K8S_VERSION, default {DEFAULT_VERSION})",
    )
    parser.add_argument("--force", action="store_true", help="rebuild even if cached")
    parser.add_argument(
        "--control-plane-only",
        action="store_true",
        help=f"only {', '.join(CONTROL_PLANE)} (no real node's kubelet or kube-proxy)",
    )
    parser.add_argument(
        "--oldest",
        action="store_true",
        help=f"the control plane of the oldest supported release, {OLDEST_VERSION}",
    )
    parser.add_argument(
        "--print-bin-dir", action="store_true", help="print the bin dir and exit (no build)"
    )
    args = parser.parse_args(argv)
    if args.oldest and args.version:
        parser.error("--oldest picks the release; leave out --version")
    if args.oldest:
        version = OLDEST_VERSION
    else:
        version = resolve_version(args.version) if args.version else selected_version()
    if args.print_bin_dir:
        print(bin_dir(version))
        return 0
    only = CONTROL_PLANE if args.control_plane_only or args.oldest else None
    print(build(version, force=args.force, only=only))
    return 0


if __name__ == "__main__":
    sys.exit(main())
