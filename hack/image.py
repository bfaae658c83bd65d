"""The webhook's container image, built here from the repository's own Dockerfile.

No container registry is reachable where the tests run, so `python:3.11-slim` cannot be pulled.
The base is made instead from Debian packages with mmdebstrap (Debian 12 ships Python 3.11), and
handed to the unchanged Dockerfile as its `BASE` build argument; buildah builds it. The result
is an OCI archive that the real nodes' containerd imports, as a user's registry would serve it.

- base: `mmdebstrap --variant=minbase` with python3, venv, ca-certificates and passwd, without
  man pages, docs and locales; this host's CA bundle is copied in so that pip inside the build
  trusts the same TLS as pip on the host (the base is never published).
- image: `buildah bud --build-arg BASE=... -f Dockerfile .`, then `buildah push` to an OCI
  archive.

Both are cached in `$XDG_CACHE_HOME/kubectl-dra/image/` under a hash of what they are made from
(the base: its recipe; the image: the Dockerfile and every file it copies), so a rebuild happens
only when one of those changes.

Usage: python -m hack.image [--print-size]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

ROOT = Path(__file__).resolve().parent.parent
IMAGE_REPO = "kubectl-dra/webhook"
BASE_REPO = "localhost/kubectl-dra-base"
DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
BASE_PACKAGES = ("python3", "python3-venv", "python-is-python3", "ca-certificates", "passwd")
# What the Dockerfile copies into the build stage: a change to any of them is a new image.
IMAGE_INPUTS = ("Dockerfile", "pyproject.toml", "README.md", "dracore", "webhook", "kubectl_dra")
APT_TOOLS = {"mmdebstrap": Path("/usr/bin/mmdebstrap"), "buildah": Path("/usr/bin/buildah")}
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


class ImageError(RuntimeError):
    """A build step failed; the message names the step and where its log is."""


@dataclass(frozen=True)
class WebhookImage:
    """The built image: the reference pods use and the archive containerd imports."""

    reference: str  # e.g. docker.io/kubectl-dra/webhook:0.1.0-3f2a9c1d, as containerd names it
    archive: Path
    size: str  # uncompressed, as buildah reports it ("321 MB")

    @property
    def tag(self) -> str:
        return self.reference.rsplit(":", 1)[1]


def image_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kubectl-dra" / "image"


def base_recipe() -> list[str]:
    """The mmdebstrap arguments (minus the output path): also the base's cache key."""
    return [
        "--variant=minbase",
        f"--include={','.join(BASE_PACKAGES)}",
        "--dpkgopt=path-exclude=/usr/share/man/*",
        "--dpkgopt=path-exclude=/usr/share/doc/*",
        "--dpkgopt=path-include=/usr/share/doc/*/copyright",
        "--dpkgopt=path-exclude=/usr/share/locale/*",
        f'--customize-hook=cp {HOST_CA_BUNDLE} "$1/etc/ssl/certs/ca-certificates.crt"',
        DEBIAN_SUITE,
    ]


def _digest(chunks: Iterable[bytes]) -> str:
    h = hashlib.sha256()
    for chunk in chunks:
        h.update(len(chunk).to_bytes(8, "big"))
        h.update(chunk)
    return h.hexdigest()[:12]


def _input_files(root: Path) -> list[Path]:
    files: list[Path] = []
    for name in IMAGE_INPUTS:
        path = root / name
        if path.is_dir():
            files += sorted(
                p
                for p in path.rglob("*")
                if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
            )
        else:
            files.append(path)
    return files


def image_key(root: Path = ROOT) -> str:
    """A hash of the Dockerfile and every file it copies, with their paths."""

    def chunks() -> Iterable[bytes]:
        yield " ".join(base_recipe()).encode()
        for path in _input_files(root):
            yield str(path.relative_to(root)).encode()
            yield path.read_bytes()

    return _digest(chunks())


def _project_version(root: Path) -> str:
    for line in (root / "pyproject.toml").read_text().splitlines():
        if line.startswith("version"):
            return line.split("=", 1)[1].strip().strip('"')
    raise ImageError("pyproject.toml has no version line")


def _run(argv: Sequence[str], *, log: Path, step: str, cwd: Path | None = None) -> str:
    with log.open("a") as out:
        out.write(f"$ {' '.join(argv)}\n")
        out.flush()
        proc = subprocess.run(
            argv, cwd=cwd, stdout=subprocess.PIPE, stderr=out, text=True, check=False
        )
        out.write(proc.stdout)
    if proc.returncode != 0:
        raise ImageError(f"{step} failed (exit {proc.returncode}); log: {log}")
    return proc.stdout


def ensure_tools(out: TextIO = sys.stderr) -> None:
    missing = [pkg for pkg, path in APT_TOOLS.items() if not path.exists()]
    if not missing:
        return
    print(f"apt-get install {' '.join(missing)}", file=out)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *missing]):
        if subprocess.run(argv, env=env, capture_output=True, check=False).returncode != 0:
            raise ImageError(f"{' '.join(argv)} failed: install {', '.join(missing)} by hand")


def _buildah_has(reference: str) -> bool:
    proc = subprocess.run(
        ["buildah", "images", "--quiet", reference], capture_output=True, check=False
    )
    return proc.returncode == 0 and bool(proc.stdout.strip())


def build_base(log: Path, out: TextIO = sys.stderr) -> str:
    """The Debian base in buildah's store, tagged by its recipe's hash."""
    reference = f"{BASE_REPO}:{DEBIAN_SUITE}-{_digest([' '.join(base_recipe()).encode()])}"
    if _buildah_has(reference):
        return reference
    print(f"making the Debian {DEBIAN_SUITE} base with mmdebstrap (cold: ~1 min)", file=out)
    tarball = image_cache() / "base.tar"
    _run(["mmdebstrap", *base_recipe(), str(tarball), DEBIAN_MIRROR], log=log, step="mmdebstrap")
    try:
        container = _run(["buildah", "from", "scratch"], log=log, step="buildah from").strip()
        _run(["buildah", "add", container, str(tarball), "/"], log=log, step="buildah add")
        path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        _run(["buildah", "config", f"--env=PATH={path}", container], log=log, step="config")
        _run(["buildah", "commit", "-q", "--rm", container, reference], log=log, step="commit")
    finally:
        tarball.unlink(missing_ok=True)
    return reference


def build(root: Path = ROOT, out: TextIO = sys.stderr) -> WebhookImage:
    """The webhook image as an OCI archive, built from `root`'s Dockerfile or taken from the cache."""
    cache = image_cache()
    cache.mkdir(parents=True, exist_ok=True)
    tag = f"{_project_version(root)}-{image_key(root)}"
    archive = cache / f"webhook-{tag}.oci.tar"
    meta = archive.with_suffix(".json")
    if archive.exists() and meta.exists():
        return WebhookImage(**{**json.loads(meta.read_text()), "archive": archive})
    ensure_tools(out)
    log = cache / "build.log"
    log.write_text("")
    started = time.monotonic()
    base = build_base(log, out)
    local = f"localhost/{IMAGE_REPO}:{tag}"
    print(f"building {IMAGE_REPO}:{tag} from Dockerfile (log: {log})", file=out)
    _run(
        [
            "buildah", "bud", "--quiet", "--network=host", "--layers=false",
            f"--build-arg=BASE={base}", f"--tag={local}", "--file=Dockerfile", ".",
        ],
        log=log, step="buildah bud", cwd=root,
    )  # fmt: skip
    reference = f"docker.io/{IMAGE_REPO}:{tag}"
    partial = archive.with_suffix(".partial")
    _run(
        ["buildah", "push", "--quiet", local, f"oci-archive:{partial}:{IMAGE_REPO}:{tag}"],
        log=log, step="buildah push",
    )  # fmt: skip
    partial.rename(archive)
    listed = json.loads(_run(["buildah", "images", "--json", local], log=log, step="images"))
    size = str(listed[0].get("size", "?")) if listed else "?"
    meta.write_text(json.dumps({"reference": reference, "size": size}))
    print(f"built {reference} in {time.monotonic() - started:.0f}s", file=out)
    return WebhookImage(reference=reference, archive=archive, size=size)


def import_into(
    image: WebhookImage, ctr: Path, address: Path, *, snapshotter: str | None = None
) -> None:
    """Import the archive into a containerd's k8s.io namespace, as kubelet sees images, unpacked
    for `snapshotter` when given (the CRI's; the real nodes use `overlayfs`)."""
    images = [str(ctr), f"--address={address}", "-n", "k8s.io", "images"]
    if snapshotter is None:
        _ctr([*images, "import", "--base-name", f"docker.io/{IMAGE_REPO}", str(image.archive)])
        return
    # Only a local import unpacks for a given snapshotter; it keeps the archive's own name
    # (`kubectl-dra/webhook:<tag>`), so the name the CRI resolves is added as a tag.
    local = ["--local", f"--snapshotter={snapshotter}", "--base-name", IMAGE_REPO]
    _ctr([*images, "import", *local, str(image.archive)])
    _ctr([*images, "tag", "--force", f"{IMAGE_REPO}:{image.tag}", image.reference])


def _ctr(argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ImageError(f"ctr {' '.join(argv[4:])}: {proc.stderr.strip()}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.parse_args(argv)
    try:
        image = build()
    except ImageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"reference: {image.reference}")
    print(f"archive: {image.archive} ({image.archive.stat().st_size / 2**20:.0f} MiB)")
    print(f"size: {image.size} uncompressed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
