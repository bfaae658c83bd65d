#!/usr/bin/env python3
"""Build the pinned Go tools the chart tests need (helm, promtool) from the Go module proxy.

Like hack/k8s_build.py: the module proxy is reachable where GitHub releases are not, so the tools
are built from source with `go install module/cmd@version` and cached in
`$XDG_CACHE_HOME/kubectl-dra/tools/<name>-<version>/bin/` (default `~/.cache/...`). A tool that is
already cached is not rebuilt. Builds run under `nice` (the machines are shared) and print progress.

Cold build times on 2 cores (shared with other builds, warm Go standard library) are in
hack/README.md.

Usage: python -m hack.go_tools [helm|promtool ...] [--print-path NAME]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class GoTool:
    name: str
    package: str  # the main package, `go install`ed at `version`
    version: str


# Pinned deliberately: the chart tests depend on their behaviour. `go list -m -versions MODULE`
# shows newer ones.
TOOLS: dict[str, GoTool] = {
    "helm": GoTool("helm", "helm.sh/helm/v3/cmd/helm", "v3.22.0"),
    "promtool": GoTool("promtool", "github.com/prometheus/prometheus/cmd/promtool", "v0.316.0"),
}


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kubectl-dra" / "tools"


def tool_path(name: str) -> Path:
    tool = TOOLS[name]
    return cache_root() / f"{tool.name}-{tool.version}" / "bin" / tool.name


def is_built(name: str) -> bool:
    return os.access(tool_path(name), os.X_OK)


def build(name: str) -> Path:
    """Build one tool unless cached; return its path. Exits with the build's tail on failure."""
    tool = TOOLS[name]
    target = tool_path(name)
    if is_built(name):
        return target
    env = dict(os.environ)
    env.setdefault("GOPROXY", "https://proxy.golang.org,direct")
    env.setdefault("CGO_ENABLED", "0")
    env["GOFLAGS"] = (env.get("GOFLAGS", "") + " -trimpath").strip()
    # Build into a scratch GOBIN and move the binary in place only when it is complete, so an
    # interrupted build never leaves a half-written tool that looks cached.
    with tempfile.TemporaryDirectory() as tmp:
        env["GOBIN"] = tmp
        cmd = [
            "nice",
            "-n",
            "10",
            "go",
            "install",
            "-ldflags=-s -w",
            f"{tool.package}@{tool.version}",
        ]
        print(
            f"building {tool.name} {tool.version} from the Go module proxy "
            f"(once; several minutes on 2 cores) ...",
            file=sys.stderr,
            flush=True,
        )
        started = time.monotonic()
        proc = subprocess.Popen(
            cmd, env=env, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        tail: deque[str] = deque(maxlen=40)
        assert proc.stdout is not None
        for line in proc.stdout:
            tail.append(line.rstrip())
        while proc.poll() is None:
            time.sleep(1)
        if proc.returncode != 0:
            raise SystemExit(
                f"building {tool.name} failed ({proc.returncode}): {' '.join(cmd)}\n"
                + "\n".join(tail)
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(Path(tmp) / tool.name), str(target))
    elapsed = time.monotonic() - started
    print(f"built {target} in {elapsed:.0f} s", file=sys.stderr, flush=True)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "tools", nargs="*", metavar="TOOL", help=f"any of {', '.join(TOOLS)} (default: all)"
    )
    parser.add_argument("--print-path", metavar="NAME", choices=list(TOOLS))
    args = parser.parse_args(argv)
    if args.print_path:
        print(tool_path(args.print_path))
        return 0
    unknown = [name for name in args.tools if name not in TOOLS]
    if unknown:
        parser.error(f"unknown tool {unknown[0]!r}; known: {', '.join(TOOLS)}")
    for name in args.tools or list(TOOLS):
        path = build(name)
        print(f"{name}: {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
