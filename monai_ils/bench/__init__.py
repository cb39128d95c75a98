"""Benchmark scripts: ``python -m monai_ils.bench <name> [options]``; each prints its figures."""
