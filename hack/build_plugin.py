#!/usr/bin/env python3
"""Build the single-file kubectl plugin (`make plugin`): dist/kubectl-dra, its krew archive, and
the krew manifest plugins/dra.yaml with the archive's sha256.

dist/kubectl-dra is a PEX zipapp of the plain install (the plugin; not the `webhook` extra, so no
gunicorn, prometheus_client or cryptography), with the dependencies' wheels for CPython
3.11-3.13 on Linux x86_64/aarch64 (glibc 2.28 or newer) and macOS 14+ arm64: some dependencies
(google-re2, orjson, pendulum, pydantic-core) are compiled, and PEX picks the wheels matching the
python3 it runs on, so the one file needs only `python3` >= 3.11 on PATH.

Each target is a complete platform: every wheel tag its interpreter accepts. An abbreviated
platform (`manylinux_2_28_x86_64-cp-312-cp312`) accepts only wheels tagged exactly
manylinux_2_28, and orjson publishes its Linux wheels as manylinux_2_17 (manylinux2014) only,
so for CPython 3.12 and 3.13 the build fell back to orjson's source and started compiling Rust.
PEX's vendored pip (20.3.4) also missed google-re2's wheels and compiled it, so the resolve uses
a pinned newer pip, and `--no-build` makes a missing wheel an error instead of a compile.

The file is run as `kubectl dra` when it is on PATH as `kubectl-dra`. Builds are reproducible
(PEX's default; the project wheel and the archive have fixed mtimes), so the manifest's sha256
changes only when the code changes or a dependency resolves to a new release: run `make plugin`
and commit plugins/dra.yaml with the change.

Usage: python -m hack.build_plugin [--out dist] [--manifest plugins/dra.yaml | --no-manifest]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# (sys.platform, machine): the krew manifest's platforms. google-re2 (cel-python's regular
# expressions) publishes the oldest wheels we can use: for Linux glibc 2.28 (manylinux_2_28), for
# macOS 14 on arm64; so those are the oldest systems the file supports.
TARGETS = (("linux", "x86_64"), ("linux", "aarch64"), ("darwin", "arm64"))
PYTHONS = (11, 12, 13)  # CPython 3.x
OLDEST_GLIBC, NEWEST_GLIBC = 17, 28
MACOS = (14, 0)
PIP_VERSION = "25.3"  # one PEX offers and the index serves; it reads every wheel tag above


def complete_platform(system: str, machine: str, minor: int) -> dict[str, Any]:
    """PEX's description of one target interpreter: its markers and every wheel tag it accepts,
    most specific first (as `pex3 interpreter inspect --markers --tags` prints on the target)."""
    from packaging import tags

    if system == "linux":
        platforms = [
            f"manylinux_2_{g}_{machine}" for g in range(NEWEST_GLIBC, OLDEST_GLIBC - 1, -1)
        ]
        platforms += [f"manylinux2014_{machine}", f"linux_{machine}"]
    else:
        platforms = list(tags.mac_platforms(MACOS, machine))
    version = (3, minor)
    accepted = [
        *tags.cpython_tags(version, abis=[f"cp3{minor}"], platforms=platforms),
        *tags.compatible_tags(version, f"cp3{minor}", platforms),
    ]
    return {
        "marker_environment": {
            "implementation_name": "cpython",
            "implementation_version": f"3.{minor}.0",
            "os_name": "posix",
            "platform_machine": machine,
            "platform_python_implementation": "CPython",
            "platform_system": "Linux" if system == "linux" else "Darwin",
            "python_full_version": f"3.{minor}.0",
            "python_version": f"3.{minor}",
            "sys_platform": system,
        },
        "compatible_tags": [str(tag) for tag in accepted],
    }


# Distributions of the `webhook` extra: the plugin must not carry them.
SERVER_STACK = (
    "gunicorn",
    "prometheus_client",
    "cryptography",
    "httptools",
    "uvloop",
)


def version() -> str:
    match = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    if not match:
        raise SystemExit("pyproject.toml: no version")
    return match.group(1)


def project_wheel(folder: Path) -> Path:
    """The project's wheel, built in place by the venv's pip. (PEX's own pip copies the whole
    source folder first, local clusters and venv included, which takes many minutes.)"""
    # The wheel's zip entries carry each file's mtime, so a fresh checkout (or a touched file)
    # changed the digest; a fixed SOURCE_DATE_EPOCH (1980-01-01, the zip format's first date)
    # makes the wheel, and so the archive, depend on the content only.
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(folder), str(ROOT)],
        check=True, env={**os.environ, "SOURCE_DATE_EPOCH": "315532800"},
    )  # fmt: skip
    [wheel] = folder.glob("kubectl_dra-*.whl")
    return wheel


def build_pex(out: Path, *, all_platforms: bool) -> Path:
    target = out / "kubectl-dra"
    with tempfile.TemporaryDirectory() as tmp:
        platforms = []
        for system, machine in TARGETS if all_platforms else ():
            for minor in PYTHONS:
                path = Path(tmp) / f"{system}-{machine}-cp3{minor}.json"
                path.write_text(json.dumps(complete_platform(system, machine, minor)))
                platforms.append(path)
        return _build_pex(project_wheel(Path(tmp)), target, platforms)


def _build_pex(wheel: Path, target: Path, platforms: list[Path]) -> Path:
    cmd = [
        sys.executable, "-m", "pex", str(wheel), "-c", "kubectl-dra", "-o", str(target),
        "--python-shebang", "/usr/bin/env python3", "--pip-version", PIP_VERSION, "--no-build",
        *(arg for p in platforms for arg in ("--complete-platform", str(p))),
    ]  # fmt: skip
    where = f"{len(platforms)} platforms" if platforms else "this interpreter and platform only"
    print(f"building {target} for {where} (pex; minutes) ...", file=sys.stderr, flush=True)
    started = time.monotonic()
    subprocess.run(cmd, check=True)
    names = zipfile.ZipFile(target).namelist()
    carried = sorted({n.split("/")[1] for n in names if n.startswith(".deps/")})
    server = [d for d in carried if d.lower().replace("-", "_").startswith(SERVER_STACK)]
    if server:
        raise SystemExit(f"{target} carries the webhook's server stack: {', '.join(server)}")
    print(
        f"built {target} ({target.stat().st_size / 2**20:.0f} MiB, {len(carried)} wheels) in "
        f"{time.monotonic() - started:.0f} s",
        file=sys.stderr,
    )
    return target


def archive(binary: Path, out: Path) -> Path:
    """A tar.gz holding `kubectl-dra` (mode 0755), byte-for-byte the same for the same input."""
    target = out / f"kubectl-dra-v{version()}.tar.gz"
    data = binary.read_bytes()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("kubectl-dra")
        info.size, info.mode, info.mtime = len(data), 0o755, 0
        tar.addfile(info, io.BytesIO(data))
    target.write_bytes(gzip.compress(raw.getvalue(), mtime=0))
    return target


def update_manifest(manifest: Path, sha256: str) -> None:
    text = manifest.read_text()
    # Quoted: a digest of decimal digits only would otherwise read back as a YAML number.
    text, count = re.subn(r"(?m)^(\s*sha256: )\S+$", lambda m: f'{m.group(1)}"{sha256}"', text)
    text = re.sub(
        r"(?m)^(\s*version: )v\S+$", lambda m: m.group(1) + f"v{version()}", text, count=1
    )
    if count == 0:
        raise SystemExit(f"{manifest}: no sha256 line to update")
    manifest.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist")
    parser.add_argument("--manifest", type=Path, default=ROOT / "plugins" / "dra.yaml")
    parser.add_argument("--no-manifest", action="store_true", help="leave the krew manifest alone")
    parser.add_argument(
        "--this-platform",
        action="store_true",
        help="only the wheels of the running interpreter (fast; for tests, not for release)",
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    tarball = archive(build_pex(args.out, all_platforms=not args.this_platform), args.out)
    sha256 = hashlib.sha256(tarball.read_bytes()).hexdigest()
    print(f"{tarball}: sha256 {sha256}", file=sys.stderr)
    if not args.no_manifest:
        update_manifest(args.manifest, sha256)
        print(
            f"install: kubectl krew install --manifest={args.manifest} --archive={tarball}",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
