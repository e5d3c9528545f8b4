"""Sparse Mixture-of-Experts from scratch, and an MoE summarizer built on it."""
