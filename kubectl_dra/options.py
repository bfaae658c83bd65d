"""Flags shared by commands, named as kubectl names them."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def connection_options(func: F) -> F:
    """--kubeconfig, --context."""
    func = click.option("--context", help="The name of the kubeconfig context to use.")(func)
    return click.option(
        "--kubeconfig", envvar="KUBECONFIG", help="Path to the kubeconfig file to use."
    )(func)


def kube_options(func: F) -> F:
    """--kubeconfig, --context, -n/--namespace, -A/--all-namespaces, -l/--selector."""
    decorators = [
        connection_options,
        click.option(
            "-n",
            "--namespace",
            help="The namespace scope for this request (default: the context's).",
        ),
        click.option("-A", "--all-namespaces", is_flag=True, help="Look in all namespaces."),
        click.option(
            "-l", "--selector", help="Label selector to filter pods on, e.g. -l app=train."
        ),
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def output_option(*choices: str, default: str) -> Callable[[F], F]:
    return click.option(
        "-o",
        "--output",
        type=click.Choice(choices),
        default=default,
        show_default=True,
        help="Output format.",
    )


DEFAULT_WIDTH: Final = 100  # a pipe or a file: wide enough to read, narrow enough to mail


def terminal_width(environ: Mapping[str, str] | None = None) -> int:
    """How wide tables may be: COLUMNS, else the terminal's width, else 100.

    kubectl's rule, except that kubectl never narrows a table; we choose columns for it.
    """
    columns = (os.environ if environ is None else environ).get("COLUMNS", "").strip()
    if columns.isascii() and columns.isdigit() and len(columns) <= 5 and int(columns) > 0:
        return int(columns)
    try:
        width = os.get_terminal_size(sys.stdout.fileno()).columns
    except (OSError, ValueError, AttributeError):  # not a terminal, or no file descriptor
        return DEFAULT_WIDTH
    return width if width > 0 else DEFAULT_WIDTH
