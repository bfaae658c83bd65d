"""Shared fixtures. Builders live in tests/builders.py (importable as `builders`)."""
