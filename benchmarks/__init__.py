"""Benchmarks: measurements of the trainer's cost, run by hand (``python -m benchmarks.<name>``)."""
