"""Offline demo: convert the legacy examples and print what the webhook would admit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    examples = [
        ROOT / "examples" / "00-legacy-pod.yaml",
        *sorted((ROOT / "examples" / "legacy").glob("*.yaml")),
    ]
    policy = ROOT / "examples" / "policy-example-driver.yaml"
    for example in examples:
        print(
            f"# ===== kubectl dra convert -f {example.relative_to(ROOT)} --policy {policy.relative_to(ROOT)}"
        )
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "kubectl_dra",
                "convert",
                "-f",
                str(example),
                "--policy",
                str(policy),
            ],
            check=False,
        )
        if done.returncode:
            return done.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
