"""Click commands of `kubectl dra`, one module per command group."""
