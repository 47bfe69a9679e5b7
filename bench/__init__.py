"""Benchmarks that print figures (not pass/fail tests). Run `python -m bench.ingest --help`."""
