"""`kubectl dra`: the root click group. Each command lives in kubectl_dra/commands/ and is
registered below with one line.

Flags -> core -> render; a user's mistake (DraError, PolicyError) -> `Error: ...` (exit 1).
Usage errors exit 2 (click's default). Tracebacks appear only with --debug or
KUBECTL_DRA_DEBUG=1.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from dracore.errors import PolicyError
from kubectl_dra.commands.admission_policies import admission_policies
from kubectl_dra.commands.audit import audit
from kubectl_dra.commands.classes import classes
from kubectl_dra.commands.convert import convert
from kubectl_dra.commands.describe import describe
from kubectl_dra.commands.prune import prune
from kubectl_dra.commands.registration import registration
from kubectl_dra.commands.top import top
from kubectl_dra.commands.validate import validate
from kubectl_dra.commands.version import version
from kubectl_dra.complete import completions
from kubectl_dra.errors import DraError
from kubectl_dra.table import safe_cell

CONTEXT_SETTINGS: dict[str, Any] = {
    "help_option_names": ["-h", "--help"],
    "auto_envvar_prefix": "KUBECTL_DRA",
}


class DraGroup(click.Group):
    """Turns our errors into one clean line on stderr instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (DraError, PolicyError) as exc:
            if ctx.meta.get("kubectl_dra.debug"):
                raise
            raise click.ClickException(one_line(exc)) from None


def one_line(exc: Exception) -> str:
    """The message of a user's mistake on one line (a policy lists each problem after `;`)."""
    if isinstance(exc, PolicyError):
        text = f"{exc.source}: {'; '.join(exc.problems)}"
    else:
        text = " ".join(str(exc).split())
    return safe_cell(text)  # messages quote names and files that others wrote


@click.group(cls=DraGroup, context_settings=CONTEXT_SETTINGS)
@click.option(
    "--debug", is_flag=True, envvar="KUBECTL_DRA_DEBUG", help="Show tracebacks on errors."
)
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """See, check and convert Kubernetes DRA (Dynamic Resource Allocation) GPU workloads.

    \b
    Examples:
      kubectl dra describe                   # devices by node: total, allocated, free
      kubectl dra describe pod train-0       # which GPU my pod got, and who else holds it
      kubectl dra validate -f claim.yaml     # check claims and selectors before applying
      kubectl dra convert -f legacy.yaml     # preview the nvidia.com/gpu -> DRA rewrite
      kubectl dra audit -A                   # what the webhook would do to running GPU workloads
      kubectl dra top --watch                # devices allocated, free and total, refreshed

    \b
    Shell completion: `kubectl dra <TAB>` works (kubectl 1.26+) when kubectl_complete-dra is on
    PATH (pip and pipx install it). For kubectl-dra itself (bash; zsh_source, fish_source):
      eval "$(_KUBECTL_DRA_COMPLETE=bash_source kubectl-dra)"
    """
    ctx.meta["kubectl_dra.debug"] = debug


cli.add_command(convert)
cli.add_command(describe)
cli.add_command(validate)
cli.add_command(audit)
cli.add_command(registration)
cli.add_command(classes)
cli.add_command(prune)
cli.add_command(top)
cli.add_command(version)
cli.add_command(admission_policies)


@cli.command("__complete", hidden=True, context_settings={"ignore_unknown_options": True})
@click.argument("words", nargs=-1, type=click.UNPROCESSED)
def complete_words(words: tuple[str, ...]) -> None:
    """What kubectl_complete-dra prints, for installs without it (the single-file plugin):
    a script `exec kubectl-dra __complete "$@"` named kubectl_complete-dra does the same."""
    click.echo(completions(cli, words), nl=False)


def main() -> None:
    try:
        # Help reads `kubectl dra ...`; completion keys on the executable's name.
        cli(prog_name="kubectl dra", complete_var="_KUBECTL_DRA_COMPLETE")
    except KeyboardInterrupt:
        sys.exit(130)


def complete_main() -> None:
    """The `kubectl_complete-dra` console script: kubectl runs it to complete `kubectl dra ...`."""
    sys.stdout.write(completions(cli, sys.argv[1:]))
