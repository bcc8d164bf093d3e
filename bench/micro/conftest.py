"""Micro-benchmarks: `pytest bench/micro` (MB/s appear in each benchmark's extra_info)."""
