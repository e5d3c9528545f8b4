"""Position schemes, each a small module behind a narrow interface (chosen by ``ModelConfig.positional``).

- ``sinusoidal`` (Vaswani et al. 2017): added to the token embeddings once, at the bottom of each stack.
- ``rope`` (Su et al. 2021): rotates queries and keys of every *self*-attention by their absolute position,
  so q.k depends only on the offset; none in cross-attention (source and target positions do not align).
- ``relative_bias`` (T5, Raffel et al. 2020): a learned scalar per (head, log-spaced distance bucket) added to
  the attention logits; bidirectional buckets in the encoder, causal ones in the decoder, shared across layers.

Dimension legend: B batch, H heads, S query length, L key length, Dh head dim, D d_model.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_table(length: int, d_model: int) -> torch.Tensor:
    """(length, d_model): sin on even dims, cos on odd dims, wavelengths from 2*pi to 10000*2*pi."""
    pos = torch.arange(length, dtype=torch.float32).unsqueeze(1)  # (length, 1)
    inv_freq = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    table = torch.zeros(length, d_model)
    table[:, 0::2] = torch.sin(pos * inv_freq)
    table[:, 1::2] = torch.cos(pos * inv_freq)
    return table


class Sinusoidal(nn.Module):
    """Adds the fixed sinusoidal table to embeddings that start at ``offset``."""

    def __init__(self, d_model: int, max_len: int):
        super().__init__()
        self.register_buffer("table", sinusoidal_table(max_len, d_model), persistent=False)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        return x + self.table[offset: offset + x.shape[1]].to(x.dtype)  # (B, S, D)


class Rotary(nn.Module):
    """Rotary embedding of q and k: pairs (x_2i, x_2i+1) rotated by angle pos * theta_i."""

    def __init__(self, head_dim: int, max_len: int, base: float = 10000.0):
        super().__init__()  # head_dim is even: ModelConfig checks it, with the flag's name
        inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)  # (Dh/2,)
        angles = torch.arange(max_len, dtype=torch.float32).unsqueeze(1) * inv_freq  # (max_len, Dh/2)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """x: (B, H, S, Dh) at absolute positions offset..offset+S-1."""
        S = x.shape[-2]
        cos = self.cos[offset: offset + S].to(x.dtype)  # (S, Dh/2)
        sin = self.sin[offset: offset + S].to(x.dtype)
        even, odd = x[..., 0::2], x[..., 1::2]  # (B, H, S, Dh/2) each
        rotated = torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1)  # (B, H, S, Dh/2, 2)
        return rotated.flatten(-2)  # (B, H, S, Dh), pairs interleaved back


def relative_buckets(relative: torch.Tensor, *, bidirectional: bool, num_buckets: int,
                     max_distance: int) -> torch.Tensor:
    """T5's bucketing of (key - query) offsets: exact buckets for small distances, log-spaced up to
    ``max_distance``, one shared bucket beyond. Bidirectional splits the buckets between the two signs;
    causal maps every future offset (which the mask hides anyway) to bucket 0.
    """
    buckets = torch.zeros_like(relative)
    if bidirectional:
        num_buckets //= 2
        buckets = buckets + (relative > 0).long() * num_buckets
        distance = relative.abs()
    else:
        distance = (-relative).clamp_min(0)
    max_exact = num_buckets // 2
    is_small = distance < max_exact
    log_ratio = torch.log(distance.float().clamp_min(1) / max_exact) / math.log(max_distance / max_exact)
    large = max_exact + (log_ratio * (num_buckets - max_exact)).long()
    large = large.clamp_max(num_buckets - 1)
    return buckets + torch.where(is_small, distance, large)


class RelativeBias(nn.Module):
    """Learned bias per (bucket, head), returned as an (H, S, L) tensor to add to the attention logits."""

    def __init__(self, num_heads: int, *, bidirectional: bool, num_buckets: int, max_distance: int):
        """``num_buckets`` and ``max_distance``: ModelConfig's ``relative_buckets`` and ``relative_max_distance``."""
        super().__init__()
        self.bidirectional, self.num_buckets, self.max_distance = bidirectional, num_buckets, max_distance
        self.bias = nn.Embedding(num_buckets, num_heads)
        nn.init.zeros_(self.bias.weight)

    def forward(self, query_len: int, key_len: int, offset: int = 0) -> torch.Tensor:
        """Bias for queries at positions offset..offset+S-1 against keys 0..L-1: (H, S, L)."""
        device = self.bias.weight.device
        q_pos = torch.arange(offset, offset + query_len, device=device).unsqueeze(1)  # (S, 1)
        k_pos = torch.arange(key_len, device=device).unsqueeze(0)  # (1, L)
        buckets = relative_buckets(k_pos - q_pos, bidirectional=self.bidirectional,
                                   num_buckets=self.num_buckets, max_distance=self.max_distance)  # (S, L)
        return self.bias(buckets).permute(2, 0, 1)  # (H, S, L)
