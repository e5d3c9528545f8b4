"""Greedy decoding, the strategy validation uses. (Beam search, sampling and the KV cache are the decoding
issue's work; they will live here behind the same ``encode`` / ``decode`` interface.)"""

from __future__ import annotations

import torch

from .model import BOS, EOS, PAD


def length_cap(src: torch.Tensor, max_len: int, ratio: float = 2.0, extra: int = 10) -> int:
    """A decoding length cap: ``ratio`` x the longest source plus ``extra``, never past ``max_len``.

    Translations rarely run past twice the source; an untrained model that never says EOS then stops early.
    """
    return min(max_len, int(ratio * src.shape[1]) + extra)


@torch.no_grad()
def greedy(model, src: torch.Tensor, max_new_tokens: int) -> list[list[int]]:
    """Most probable token at every step, recomputing the prefix (no cache): src (B, L) -> ids per sentence."""
    model.eval()
    memory, src_mask = model.encode(src)
    B = src.shape[0]
    out = torch.full((B, 1), BOS, dtype=torch.long, device=src.device)
    done = torch.zeros(B, dtype=torch.bool, device=src.device)
    for _ in range(max_new_tokens):
        next_tok = model.decode(out, memory, src_mask)[:, -1].argmax(-1)  # (B,)
        next_tok = next_tok.masked_fill(done, PAD)
        out = torch.cat([out, next_tok[:, None]], dim=1)
        done |= next_tok == EOS
        if done.all():
            break
    return [row[1:].tolist() for row in out]
