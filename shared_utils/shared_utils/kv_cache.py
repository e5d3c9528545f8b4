"""Beam search over a Hugging Face model's key/value cache: the rows of a ``transformers.DynamicCache``.

Every project's decoding reorders its states by row (``state.select(index)``); a transformers cache reorders in
place (``reorder_cache``), which would change a state that beam search may still read. This makes a new one.
"""

from __future__ import annotations

import torch


def cache_rows(cache, index: torch.Tensor):
    """A new ``DynamicCache`` holding rows ``index`` (N',) of every layer of ``cache`` (the old one is untouched)."""
    from transformers import DynamicCache

    new = DynamicCache()
    for i, layer in enumerate(cache.layers):
        new.update(layer.keys.index_select(0, index), layer.values.index_select(0, index), i)
    return new
