"""Shared fixtures. tests/ is a package: builders are imported as `tests.builders`."""
