"""Measuring: size on disk, params, non-zeros, MACs, latency, peak memory, the task metric."""
