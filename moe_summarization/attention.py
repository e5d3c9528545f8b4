"""Multi-head attention for this project's models (own code; the translation project keeps its own).

Uses ``scaled_dot_product_attention``; masks are boolean ``True = may attend``. The explicit softmax version
and its equivalence test live in the translation project, whose subject attention is; here it is plumbing.

Dimension legend: B batch, S query length, L key length, H heads, Dh head dim, D d_model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MultiHeadAttention(nn.Module):
    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model {d_model} is not divisible by num_heads {num_heads}")
        self.h, self.dropout = num_heads, dropout
        self.q = nn.Linear(d_model, d_model)
        self.kv = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        B, S, D = x.shape
        return x.view(B, S, self.h, D // self.h).transpose(1, 2)  # (B, H, S, Dh)

    def project_kv(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of ``memory``: (B, L, D) -> 2 x (B, H, L, Dh); cached once per source in decoding."""
        k, v = self.kv(memory).chunk(2, dim=-1)
        return self.split(k), self.split(v)

    def forward(self, x: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor],
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, S, D) queries; kv from :meth:`project_kv`; mask broadcastable to (B, H, S, L)."""
        q = self.split(self.q(x))  # (B, H, S, Dh)
        k, v = kv
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                           dropout_p=self.dropout if self.training else 0.0)  # (B, H, S, Dh)
        B, H, S, Dh = y.shape
        return self.out(y.transpose(1, 2).reshape(B, S, H * Dh))  # (B, S, D)
