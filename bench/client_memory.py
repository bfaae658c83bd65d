"""What the official `kubernetes` package costs a webhook process, as PSS (no timing asserted).

    .venv/bin/python -m bench.client_memory

PSS (proportional set size, from /proc/PID/smaps_rollup) divides each shared page among the
processes mapping it, so summing it over a master and its forked workers counts shared pages
once; summing RSS would count them in every process.  Printed, each in a fresh interpreter that
has imported the webhook's server first:
- one process, before and after `import kubernetes.client, kubernetes.config`;
- a master and 2 forked workers (each worker runs a full gc, as a live worker soon does, which
  unshares the pages of every object it visits): the package imported by each worker after
  the fork, and imported once by the master before it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

CHILD = "bench.client_memory"


def smaps(pid: int, key: str) -> int:
    """`key` (Pss, Rss) of a process in KiB."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {key} in /proc/{pid}/smaps_rollup")


def import_client() -> None:
    import kubernetes.client
    import kubernetes.config  # noqa: F401


def one_process() -> str:
    import gc

    import webhook.serving.server  # noqa: F401

    gc.collect()
    pss, rss = smaps(os.getpid(), "Pss"), smaps(os.getpid(), "Rss")
    import_client()
    gc.collect()
    grown_pss = (smaps(os.getpid(), "Pss") - pss) / 1024
    grown_rss = (smaps(os.getpid(), "Rss") - rss) / 1024
    return f"{grown_pss:.1f} {grown_rss:.1f}"


def forked(where: str) -> str:
    """PSS and RSS (MiB) summed over a master and 2 workers; `where`: none, master, workers."""
    import gc

    import webhook.serving.server  # noqa: F401

    if where == "master":
        import_client()
    gc.collect()
    release_r, release_w = os.pipe()
    ready_r, ready_w = os.pipe()
    workers = []
    for _ in range(2):
        pid = os.fork()
        if pid == 0:
            if where == "workers":
                import_client()
            gc.collect()
            os.write(ready_w, b"1")
            os.read(release_r, 1)
            os._exit(0)
        workers.append(pid)
    for _ in workers:
        os.read(ready_r, 1)
    time.sleep(0.3)
    pids = [os.getpid(), *workers]
    pss = sum(smaps(p, "Pss") for p in pids) / 1024
    rss = sum(smaps(p, "Rss") for p in pids) / 1024
    os.write(release_w, b"x" * len(workers))
    for pid in workers:
        os.waitpid(pid, 0)
    return f"{pss:.1f} {rss:.1f}"


def run(*args: str) -> list[float]:
    out = subprocess.run(
        [sys.executable, "-m", CHILD, "--child", *args], capture_output=True, text=True, check=True
    )
    return [float(v) for v in out.stdout.split()]


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        print(one_process() if sys.argv[2] == "one" else forked(sys.argv[2]))
        return
    pss, rss = run("one")
    print(f"one process: +{pss:.1f} MiB PSS (+{rss:.1f} MiB RSS)")
    base_pss, base_rss = run("none")
    for where in ("workers", "master"):
        pss, rss = run(where)
        print(
            f"master + 2 workers, imported by the {where}: +{pss - base_pss:.1f} MiB PSS in all "
            f"(summed RSS: +{rss - base_rss:.1f} MiB)"
        )


if __name__ == "__main__":
    main()
