"""Tests of kubectl-dra; a package so that `tests.builders` is imported by name."""
