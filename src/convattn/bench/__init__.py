"""Inference speed harness and model profiling (params, MACs)."""
