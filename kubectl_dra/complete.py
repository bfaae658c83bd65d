"""Shell completion of `kubectl dra ...` through kubectl (1.26+).

kubectl completes a plugin's arguments by running `kubectl_complete-<plugin>` from PATH with the
words typed after the plugin's name, the one being completed last (`""` for a new word). It reads
one choice per line (`value<TAB>description`) and, on the last line, `:<n>`, a Cobra
ShellCompDirective telling the shell what else to do. The choices come from click's own
completion of our command tree: no API call, so completing stays instant and works offline.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import click
from click.shell_completion import ShellComplete

# Cobra's ShellCompDirective values (a bit field).
DIRECTIVE_DEFAULT: Final = 0  # the shell may also complete file names
DIRECTIVE_NO_FILE_COMPLETION: Final = 4
MAX_WORDS: Final = 1000  # a command line longer than this is not being typed by a person


def completions(root: click.Command, words: Sequence[str]) -> str:
    """What kubectl expects from `kubectl_complete-dra WORD... INCOMPLETE`."""
    *args, incomplete = list(words[:MAX_WORDS]) or [""]
    completer = ShellComplete(root, {}, "kubectl dra", "_KUBECTL_DRA_COMPLETE")
    items = completer.get_completions(args, incomplete)
    if not items or any(item.type in ("file", "dir") for item in items):
        # A path (-f, --policy, --kubeconfig) or a name we do not list: the shell's default.
        return f":{DIRECTIVE_DEFAULT}\n"
    lines = []
    for item in items:
        value = " ".join(str(item.value).split())
        summary = " ".join(str(item.help or "").split())
        lines.append(f"{value}\t{summary}" if summary else value)
    return "".join(f"{line}\n" for line in lines) + f":{DIRECTIVE_NO_FILE_COMPLETION}\n"
