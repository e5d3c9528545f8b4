"""Sparse Mixture-of-Experts from scratch, and an MoE summarizer built on it."""

from shared_utils.runtime import quiet_optional_extensions

quiet_optional_extensions()
