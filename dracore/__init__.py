"""The pure DRA model shared by the webhook and the kubectl plugin.

Nothing here does I/O or imports Flask, gunicorn, the kubernetes client or prometheus; the
import-linter contracts in pyproject.toml keep it so. Both `webhook` and `kubectl_dra` depend on
this package, and neither depends on the other.
"""
