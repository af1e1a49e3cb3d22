"""Benchmarks: each prints what it measured, on what, a table, and writes bench/results/<name>.json.

They are not tests: nothing here asserts a number. Run one with
`.venv/bin/python -m bench.<name> [--quick]`; see docs/benchmarks.md.
"""
