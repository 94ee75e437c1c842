"""Benchmarks for sidecar-agent (run from the repository root: ``python -m bench.probe``)."""
