"""Triton building blocks for families, each beside its PyTorch reference."""
