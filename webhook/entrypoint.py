"""The `dra-webhook` console script: the server when its libraries are installed, else one line
saying how to get them.

The plain install (`pip install kubectl-dra`) is the kubectl plugin only and ships this script
too; without the `webhook` extra its server libraries are missing, and the first import of one
would end in a traceback.
"""

from __future__ import annotations

import sys
from typing import Final

SERVER_LIBRARIES: Final = frozenset(
    {"gunicorn", "httptools", "uvloop", "prometheus_client", "cryptography"}
)


def main() -> None:
    if sys.argv[1:2] == ["hold-listener"]:
        # A sidecar of every replica: it skips click and the server libraries to stay a few MB.
        from webhook.serving.handoff import main as hold_listener

        hold_listener(sys.argv[2:])
        return
    try:
        from webhook.cli import main as serve

        serve()  # some commands import a server library only when they run
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").partition(".")[0]
        if missing not in SERVER_LIBRARIES:
            raise
        print(
            f"dra-webhook needs the server libraries ({missing} is not installed): "
            "pip install 'kubectl-dra[webhook]'",
            file=sys.stderr,
        )
        raise SystemExit(1) from None
