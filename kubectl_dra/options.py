"""Flags shared by commands, named as kubectl names them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def kube_options(func: F) -> F:
    """--kubeconfig, --context, -n/--namespace, -A/--all-namespaces, -l/--selector."""
    decorators = [
        click.option(
            "--kubeconfig", envvar="KUBECONFIG", help="Path to the kubeconfig file to use."
        ),
        click.option("--context", help="The name of the kubeconfig context to use."),
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
