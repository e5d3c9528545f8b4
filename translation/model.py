"""The encoder-decoder Transformer, pre-LayerNorm, with tied embeddings, assembled by ``build_model(cfg)``.

    src ids --embed*sqrt(D)--[+sinusoidal]--> EncoderBlock x N --LN--> memory
    tgt ids --embed*sqrt(D)--[+sinusoidal]--> DecoderBlock x N --LN--> @ embed^T --> logits

One embedding matrix serves the encoder, the decoder and the output projection (the vocabulary is shared).
Position schemes plug in through ``positional.py``: sinusoidal adds to the embeddings, RoPE rotates q/k in
self-attention, relative bias adds (H, S, L) logits shared by all layers of a stack.

Dimension legend: B batch, S target length, L source length, D d_model, H heads, V vocabulary.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .attention import MultiHeadAttention
from .config import ModelConfig
from .positional import RelativeBias, Rotary, Sinusoidal

PAD, BOS, EOS, UNK = 0, 1, 2, 3
NEG_INF = float("-inf")


def padding_mask(ids: torch.Tensor) -> torch.Tensor:
    """Additive mask hiding PAD keys: (B, L) ids -> (B, 1, 1, L) of 0 / -inf."""
    return torch.zeros(ids.shape, dtype=torch.float32, device=ids.device).masked_fill(ids == PAD, NEG_INF)[:, None,
                                                                                                         None, :]


def causal_mask(size: int, device: torch.device) -> torch.Tensor:
    """Additive mask hiding future positions: (S, S) with -inf above the diagonal."""
    return torch.full((size, size), NEG_INF, device=device).triu(1)


class FeedForward(nn.Module):
    def __init__(self, d_model: int, d_ff: int, dropout: float):
        super().__init__()
        self.fc1, self.fc2, self.dropout = nn.Linear(d_model, d_ff), nn.Linear(d_ff, d_model), nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.dropout(F.gelu(self.fc1(x))))


class EncoderBlock(nn.Module):
    def __init__(self, cfg: ModelConfig, rotary: Rotary | None):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.attn = MultiHeadAttention(cfg.d_model, cfg.num_heads, cfg.dropout, fused=cfg.fused_attention,
                                       rotary=rotary)
        self.ffn = FeedForward(cfg.d_model, cfg.d_ff, cfg.dropout)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.ln1(x)
        x = x + self.dropout(self.attn(h, self.attn.keys_values(h), mask))
        return x + self.dropout(self.ffn(self.ln2(x)))


class DecoderBlock(nn.Module):
    def __init__(self, cfg: ModelConfig, rotary: Rotary | None):
        super().__init__()
        self.ln1, self.ln2, self.ln3 = (nn.LayerNorm(cfg.d_model) for _ in range(3))
        self.self_attn = MultiHeadAttention(cfg.d_model, cfg.num_heads, cfg.dropout, fused=cfg.fused_attention,
                                            rotary=rotary)
        self.cross_attn = MultiHeadAttention(cfg.d_model, cfg.num_heads, cfg.dropout, fused=cfg.fused_attention)
        self.ffn = FeedForward(cfg.d_model, cfg.d_ff, cfg.dropout)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, memory_kv: tuple[torch.Tensor, torch.Tensor], self_mask: torch.Tensor,
                cross_mask: torch.Tensor) -> torch.Tensor:
        h = self.ln1(x)
        x = x + self.dropout(self.self_attn(h, self.self_attn.keys_values(h), self_mask))
        x = x + self.dropout(self.cross_attn(self.ln2(x), memory_kv, cross_mask))
        return x + self.dropout(self.ffn(self.ln3(x)))


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        head_dim = cfg.d_model // cfg.num_heads
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model, padding_idx=PAD)
        nn.init.normal_(self.embed.weight, std=cfg.d_model ** -0.5)  # x sqrt(D) at input -> unit variance
        self.sinusoidal = Sinusoidal(cfg.d_model, cfg.max_len + 2) if cfg.positional == "sinusoidal" else None
        rotary = Rotary(head_dim, cfg.max_len + 2) if cfg.positional == "rope" else None
        self.enc_bias = self.dec_bias = None
        if cfg.positional == "relative_bias":
            kw = dict(num_buckets=cfg.relative_buckets, max_distance=cfg.relative_max_distance)
            self.enc_bias = RelativeBias(cfg.num_heads, bidirectional=True, **kw)
            self.dec_bias = RelativeBias(cfg.num_heads, bidirectional=False, **kw)
        self.encoder = nn.ModuleList(EncoderBlock(cfg, rotary) for _ in range(cfg.encoder_layers))
        self.decoder = nn.ModuleList(DecoderBlock(cfg, rotary) for _ in range(cfg.decoder_layers))
        self.enc_ln, self.dec_ln = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.dropout = nn.Dropout(cfg.dropout)

    def embed_tokens(self, ids: torch.Tensor, offset: int = 0) -> torch.Tensor:
        x = self.embed(ids) * math.sqrt(self.cfg.d_model)  # (B, S, D)
        if self.sinusoidal is not None:
            x = self.sinusoidal(x, offset)
        return self.dropout(x)

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """src: (B, L) ids -> (memory (B, L, D), source padding mask (B, 1, 1, L))."""
        src_mask = padding_mask(src)
        mask = src_mask if self.enc_bias is None else src_mask + self.enc_bias(src.shape[1], src.shape[1])
        x = self.embed_tokens(src)
        for block in self.encoder:
            x = block(x, mask)
        return self.enc_ln(x), src_mask

    def decode(self, tgt_in: torch.Tensor, memory: torch.Tensor, src_mask: torch.Tensor) -> torch.Tensor:
        """Teacher-forced decoder: tgt_in (B, S) ids -> logits (B, S, V)."""
        S = tgt_in.shape[1]
        self_mask = causal_mask(S, tgt_in.device)  # (S, S)
        if self.dec_bias is not None:
            self_mask = self_mask + self.dec_bias(S, S)  # (H, S, S)
        x = self.embed_tokens(tgt_in)
        for block in self.decoder:
            x = block(x, block.cross_attn.keys_values(memory), self_mask, src_mask)
        return self.dec_ln(x) @ self.embed.weight.t()  # (B, S, V), tied output projection

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        memory, src_mask = self.encode(src)
        return self.decode(tgt_in, memory, src_mask)


def build_model(cfg: ModelConfig) -> Transformer:
    """The one factory: every part chosen by the config."""
    return Transformer(cfg)
