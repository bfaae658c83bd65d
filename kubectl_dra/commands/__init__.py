"""One module per `kubectl dra` command group; cli.py registers each with one line."""
