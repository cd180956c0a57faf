"""Benchmarks: `python -m bench` (all six ratios) and `python -m bench.input_pipeline`."""
