"""`kubectl dra version`: the plugin's version, from the installed package's metadata."""

from __future__ import annotations

import platform
from importlib import metadata

import click

from kubectl_dra.commands.common import emit
from kubectl_dra.options import output_option

DISTRIBUTION = "kubectl-dra"


def plugin_version() -> str:
    """The installed distribution's version; "unknown" when run from a bare source tree."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown"


@click.command()
@output_option("text", "json", "yaml", default="text")
def version(output: str) -> None:
    """Show the version of kubectl dra (and of the Python running it).

    \b
    Examples:
      kubectl dra version
      kubectl dra version -o json
    """
    from kubectl_dra import render

    document = {
        "apiVersion": render.DESCRIBE_API_VERSION,
        "kind": "Version",
        "version": plugin_version(),
        "python": platform.python_version(),
    }
    if output == "text":
        emit(f"kubectl-dra v{document['version']} (Python {document['python']})\n")
    else:
        emit(render.format_document(document, output))
