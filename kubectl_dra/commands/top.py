"""`kubectl dra top`: devices allocated, free and total per node and model, once or every N s.

Two list calls per refresh (ResourceSlices, ResourceClaims), whatever the cluster's size.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final

import click

from kubectl_dra.commands.common import cluster_reader, emit
from kubectl_dra.errors import DraError
from kubectl_dra.kube import ClusterReader
from kubectl_dra.options import connection_options, output_option, terminal_width

NO_DEVICES: Final = "No resources found (no ResourceSlice publishes devices)."
CLEAR_SCREEN: Final = "\x1b[H\x1b[2J"  # cursor home, erase the screen: what watch(1) does


def snapshot(reader: ClusterReader, *, output: str) -> str:
    """One look at the cluster, as the text to print."""
    from kubectl_dra import render
    from kubectl_dra.report.utilization import build_utilization

    report = build_utilization(reader.list_resource_slices(), reader.list_resource_claims(None))
    if output in ("json", "yaml"):
        return render.format_document(render.utilization_document(report), output)
    if not report.nodes:
        return NO_DEVICES + "\n"
    return render.render_utilization(report, width=None if output == "wide" else terminal_width())


def refresh_until_interrupted(
    take: Callable[[], str],
    *,
    interval: float,
    write: Callable[[str], None],
    warn: Callable[[str], None],
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    heading: bool = True,
    clear: bool = False,
    iterations: int | None = None,
) -> int:
    """Write a snapshot every `interval` seconds until Ctrl-C (or `iterations` of them).

    A refresh starts `interval` after the previous one started, however long the lists took.
    An API error is shown and the next refresh tries again: a watch outlives a blip. Returns
    how many snapshots were written.
    """
    written = 0
    try:
        while iterations is None or written < iterations:
            started = monotonic()
            try:
                text = take()
            except DraError as exc:
                warn(f"Error: {' '.join(str(exc).split())}")
            else:
                stamp = f"Every {interval:g}s: kubectl dra top    {now():%Y-%m-%d %H:%M:%S %Z}\n\n"
                write((CLEAR_SCREEN if clear else "") + (stamp if heading else "") + text)
                written += 1
            if iterations is not None and written >= iterations:
                break
            sleep(max(0.0, interval - (monotonic() - started)))
    except KeyboardInterrupt:  # Ctrl-C is how a watch ends: not an error
        pass
    return written


@click.command()
@connection_options
@output_option("table", "wide", "json", "yaml", default="table")
@click.option("-w", "--watch", "watching", is_flag=True, help="Refresh until Ctrl-C.")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.5, max=3600),
    default=2.0,
    show_default=True,
    help="Seconds between refreshes with --watch.",
)
@click.pass_context
def top(
    ctx: click.Context,
    /,
    kubeconfig: str | None,
    context: str | None,
    output: str,
    watching: bool,
    interval: float,
) -> None:
    """Show DRA devices allocated, free and total, per node and model.

    Per node: its physical GPUs (a GPU and the MIG devices carved from it count once), then its
    devices by model and MIG profile; then the same for all nodes, NODE (all). A free device can
    still be allocated: not a GPU while a MIG device of it is in use, nor a MIG device of a GPU
    in use whole.

    \b
    Examples:
      kubectl dra top
      kubectl dra top --watch --interval 5
      kubectl dra top -o json
    """
    reader = cluster_reader(ctx, kubeconfig=kubeconfig, context=context)
    if not watching:
        emit(snapshot(reader, output=output))
        return
    documents = output in ("json", "yaml")
    refresh_until_interrupted(
        lambda: ("---\n" if output == "yaml" else "") + snapshot(reader, output=output),
        interval=interval,
        write=emit,
        warn=lambda line: click.echo(line, err=True),
        sleep=time.sleep,  # looked up now, so a test can stand in for the clock
        heading=not documents,  # stdout carries data only: a stream of documents
        clear=not documents and sys.stdout.isatty(),
    )
