"""Benchmarks: data-prep and training throughput beside their baselines. Never run by the pipeline."""
