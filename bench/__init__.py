"""Benchmarks of the pipeline on this machine (see bench/run.py)."""
