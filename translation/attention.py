"""Multi-head attention, written out: the explicit computation is the reference, SDPA the fused fast path.

    scores = Q K^T / sqrt(Dh) + bias + mask      # bias: relative position (H, S, L); mask: 0 or -inf
    out    = dropout(softmax(scores)) V

Masks are additive float tensors broadcastable to (B, H, S, L). RoPE, when given, rotates q and k (self-
attention only). A key/value cache lets the decoder run one token at a time (see ``translation/decoding``).
Given a :class:`Packing`, the inputs are packed (T, D) rows of real tokens: the projections skip the pads, and
only the attention itself runs on the padded (B, H, S, L) layout.

Dimension legend: B batch, H heads, S query length, L key length, Dh head dim, D d_model.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .positional import Rotary


class Packing:
    """Where the real tokens of a right-padded batch sit, so that position-wise layers (projections, FFN, norms,
    dropout) run on them alone: under length bucketing about a third of the decoder's positions are padding.

    real: (B, L) bool, true at real tokens. Rows are packed in row-major order, the order of ``x[real]``.
    """

    def __init__(self, real: torch.Tensor):
        self.batch, self.length = real.shape
        self.rows = real.flatten().nonzero().squeeze(1)  # (T,) indices into the flattened (B * L)

    def pack(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, ...) -> (T, ...)."""
        return x.flatten(0, 1).index_select(0, self.rows)

    def unpack(self, x: torch.Tensor) -> torch.Tensor:
        """(T, ...) -> (B, L, ...), zeros at the pads."""
        full = x.new_zeros((self.batch * self.length, *x.shape[1:])).index_copy(0, self.rows, x)
        return full.view(self.batch, self.length, *x.shape[1:])


def attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
                        dropout: float, training: bool) -> torch.Tensor:
    """The textbook computation: (B, H, S, Dh) x (B, H, L, Dh) -> (B, H, S, Dh)."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, H, S, L)
    if mask is not None:
        scores = scores + mask
    weights = F.dropout(scores.softmax(dim=-1), p=dropout, training=training)
    return weights @ v


def attention_fused(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
                    dropout: float, training: bool) -> torch.Tensor:
    """The same through ``scaled_dot_product_attention`` (flash / memory-efficient kernels where available)."""
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout if training else 0.0)


class MultiHeadAttention(nn.Module):
    def __init__(self, d_model: int, num_heads: int, dropout: float, *, fused: bool = True,
                 rotary: Rotary | None = None, bias: bool = True):
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model {d_model} is not divisible by num_heads {num_heads}")
        self.h, self.dropout, self.rotary = num_heads, dropout, rotary
        self.attend = attention_fused if fused else attention_reference
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)

    def heads(self, x: torch.Tensor, packing: Packing | None = None) -> torch.Tensor:
        """(B, S, D), or packed (T, D) with its ``packing`` -> (B, H, S, Dh)."""
        if packing is not None:
            x = packing.unpack(x)
        B, S, D = x.shape
        return x.view(B, S, self.h, D // self.h).transpose(1, 2)  # (B, H, S, Dh)

    def keys_values(self, x: torch.Tensor, offset: int = 0,
                    packing: Packing | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Projected (and, with RoPE, rotated) keys and values of x (B, L, D) or packed: 2 x (B, H, L, Dh)."""
        k = self.heads(self.k_proj(x), packing)
        if self.rotary is not None:
            k = self.rotary(k, offset)
        return k, self.heads(self.v_proj(x), packing)

    def forward(self, x: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor | None = None,
                offset: int = 0, packing: Packing | None = None) -> torch.Tensor:
        """x: (B, S, D) queries at positions offset.., or packed (T, D) with its ``packing`` (then so is the
        output); kv from :meth:`keys_values` (possibly cached)."""
        q = self.heads(self.q_proj(x), packing)  # (B, H, S, Dh)
        if self.rotary is not None:
            q = self.rotary(q, offset)
        k, v = kv
        y = self.attend(q, k, v, mask, self.dropout, self.training)  # (B, H, S, Dh)
        B, H, S, Dh = y.shape
        y = y.transpose(1, 2).reshape(B, S, H * Dh)  # (B, S, D)
        return self.out_proj(y if packing is None else packing.pack(y))
