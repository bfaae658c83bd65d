"""Errors with user-facing messages; cli.py turns them into `Error: ...` and exit code 1."""

from __future__ import annotations


class DraError(Exception):
    """Base class: the message is shown to the user as is."""


class InputError(DraError):
    """A manifest that cannot be read or understood; the message names the file and document."""


class KubeError(DraError):
    """The API server refused or could not be reached; the message carries a hint."""


class NotFoundError(KubeError):
    pass
