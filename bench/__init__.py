"""Standalone benchmarks (``uv run --group bench python -m bench.<name> [--quick]``); see README."""
