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
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from shared_utils import checkpoint

from .attention import MultiHeadAttention, Packing
from .config import ModelConfig
from .positional import RelativeBias, Rotary, Sinusoidal
from .tokenizer import BOS, EOS, PAD, UNK  # noqa: F401  (the ids the tokenizer owns; model users import them here)

NEG_INF = float("-inf")
KV = tuple[torch.Tensor, torch.Tensor]  # keys, values: 2 x (B, H, L, Dh)


def padding_mask(ids: torch.Tensor) -> torch.Tensor:
    """Additive mask hiding PAD keys: (B, L) ids -> (B, 1, 1, L) of 0 / -inf."""
    return torch.zeros(ids.shape, dtype=torch.float32, device=ids.device).masked_fill(ids == PAD, NEG_INF)[:, None,
                                                                                                         None, :]


def causal_mask(size: int, device: torch.device) -> torch.Tensor:
    """Additive mask hiding future positions: (S, S) with -inf above the diagonal."""
    return torch.full((size, size), NEG_INF, device=device).triu(1)


def swiglu_hidden(d_ff: int) -> int:
    """SwiGLU's hidden size for the parameters of a 2-matrix FFN of ``d_ff``: 2/3 d_ff, a multiple of 8."""
    return 8 * round(2 * d_ff / 3 / 8)


class Dropout(nn.Module):
    """Inverted dropout from 15 random bits per element, four elements to one int64 draw. Torch's CPU dropout
    draws a Bernoulli sample per element and then masks and scales in separate passes, and a training step
    runs dropout 17 times. The rate is rounded to a multiple of 1/32768 (0.1 -> 0.100006) and the
    kept values are scaled by 1 / (1 - that rate), so the expectation stays exact. CUDA's dropout is one fused
    kernel already, and is used as it is."""

    BITS = 1 << 15

    def __init__(self, p: float):
        super().__init__()
        self.p, self.cut = p, round(p * self.BITS)  # an element is dropped when its 15 bits are < cut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.cut == 0:
            return x
        if x.is_cuda or self.cut == self.BITS:
            return F.dropout(x, self.p, True)
        n = x.numel()
        # random_() fills an int64 with 63 random bits: its four 16-bit lanes masked to 15 bits are uniform
        bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_().view(torch.int16)[:n]
        keep = (bits & (self.BITS - 1)).view(x.shape) >= self.cut
        return x * (keep * (self.BITS / (self.BITS - self.cut))).to(x.dtype)


class FeedForward(nn.Module):
    """``fc2(gelu(fc1 x))``, or with ``gated`` SwiGLU: ``fc2(silu(fc1 x) * gate x)`` over 2/3 the width."""

    def __init__(self, d_model: int, d_ff: int, dropout: float, *, gated: bool = False, bias: bool = True):
        super().__init__()
        hidden = swiglu_hidden(d_ff) if gated else d_ff
        self.fc1, self.fc2 = nn.Linear(d_model, hidden, bias=bias), nn.Linear(hidden, d_model, bias=bias)
        self.gate = nn.Linear(d_model, hidden, bias=bias) if gated else None
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.gelu(self.fc1(x)) if self.gate is None else F.silu(self.fc1(x)) * self.gate(x)  # (B, S, hidden)
        return self.fc2(self.dropout(h))


def norm_layer(cfg: ModelConfig) -> nn.Module:
    return nn.RMSNorm(cfg.d_model) if cfg.norm == "rmsnorm" else nn.LayerNorm(cfg.d_model, bias=cfg.bias)


def feed_forward(cfg: ModelConfig) -> FeedForward:
    return FeedForward(cfg.d_model, cfg.d_ff, cfg.activation_dropout, gated=cfg.ffn == "swiglu", bias=cfg.bias)


class EncoderBlock(nn.Module):
    def __init__(self, cfg: ModelConfig, rotary: Rotary | None):
        super().__init__()
        self.ln1, self.ln2 = norm_layer(cfg), norm_layer(cfg)
        self.attn = MultiHeadAttention(cfg.d_model, cfg.num_heads, cfg.attention_dropout,
                                       fused=cfg.fused_attention, rotary=rotary, bias=cfg.bias)
        self.ffn = feed_forward(cfg)
        self.dropout = Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, packing: Packing | None = None) -> torch.Tensor:
        """x: (B, L, D), or packed (T, D) with its ``packing``."""
        h = self.ln1(x)
        x = x + self.dropout(self.attn(h, self.attn.keys_values(h, packing=packing), mask, packing=packing))
        return x + self.dropout(self.ffn(self.ln2(x)))


class DecoderBlock(nn.Module):
    def __init__(self, cfg: ModelConfig, rotary: Rotary | None):
        super().__init__()
        self.ln1, self.ln2, self.ln3 = (norm_layer(cfg) for _ in range(3))
        self.self_attn = MultiHeadAttention(cfg.d_model, cfg.num_heads, cfg.attention_dropout,
                                            fused=cfg.fused_attention, rotary=rotary, bias=cfg.bias)
        self.cross_attn = MultiHeadAttention(cfg.d_model, cfg.num_heads, cfg.attention_dropout,
                                             fused=cfg.fused_attention, bias=cfg.bias)
        self.ffn = feed_forward(cfg)
        self.dropout = Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, memory_kv: KV, self_mask: torch.Tensor | None, cross_mask: torch.Tensor,
                past: SelfCache | None = None, offset: int = 0, packing: Packing | None = None) -> torch.Tensor:
        """x: (B, S, D) at positions offset.., or packed (T, D) with its ``packing``; past: the self-attention
        cache of positions 0..offset-1, to which this call appends x's keys/values (incremental decoding)."""
        h = self.ln1(x)
        kv = self.self_attn.keys_values(h, offset, packing)  # 2 x (B, H, S, Dh)
        if past is not None:
            kv = past.append(*kv)  # 2 x (B, H, offset+S, Dh)
        x = x + self.dropout(self.self_attn(h, kv, self_mask, offset, packing))
        x = x + self.dropout(self.cross_attn(self.ln2(x), memory_kv, cross_mask, packing=packing))
        return x + self.dropout(self.ffn(self.ln3(x)))


class SelfCache:
    """One decoder layer's self-attention keys/values, in buffers with room to grow: a step writes its one
    position in place, where ``torch.cat`` would copy the whole prefix every step. Capacity doubles when full,
    so the copies stay linear in the output length."""

    def __init__(self, k: torch.Tensor, v: torch.Tensor, length: int):
        self.k, self.v, self.length = k, v, length  # 2 x (N, H, capacity, Dh); positions < length are filled

    @classmethod
    def empty(cls, like: torch.Tensor, capacity: int = 16) -> SelfCache:
        """A cache for keys shaped like ``like`` (N, H, S, Dh), nothing written yet."""
        N, H, _, Dh = like.shape
        buffers = like.new_empty((2, N, H, capacity, Dh))
        return cls(buffers[0], buffers[1], 0)

    def append(self, k: torch.Tensor, v: torch.Tensor) -> KV:
        """Write k, v (N, H, S, Dh) after the filled positions; returns views of all of them (N, H, length, Dh)."""
        end = self.length + k.shape[2]
        if end > self.k.shape[2]:
            grown = SelfCache.empty(self.k, max(2 * self.k.shape[2], end))
            grown.k[:, :, : self.length], grown.v[:, :, : self.length] = self.keys_values()
            self.k, self.v = grown.k, grown.v
        self.k[:, :, self.length: end], self.v[:, :, self.length: end] = k, v
        self.length = end
        return self.keys_values()

    def keys_values(self) -> KV:
        return self.k[:, :, : self.length], self.v[:, :, : self.length]

    def select(self, index: torch.Tensor) -> SelfCache:
        return SelfCache(self.k.index_select(0, index), self.v.index_select(0, index), self.length)


@dataclass
class DecoderState:
    """What incremental decoding carries from one step to the next; every tensor is indexed by row first
    (a row is a sentence, or a sentence x beam), so :meth:`select` reorders or prunes all of it at once."""

    memory_kv: list[KV]  # per decoder layer: cross-attention keys/values, 2 x (N, H, L, Dh), computed once
    src_mask: torch.Tensor  # (N, 1, 1, L)
    tokens: torch.Tensor  # (N, t) tokens fed so far, BOS first
    self_kv: list[SelfCache] | None  # per decoder layer: self-attention keys/values of those t tokens; None = no
    # cache (empty before the first step)

    def select(self, index: torch.Tensor, same_source: bool = False) -> DecoderState:
        """Rows ``index`` (N',) of everything: beam reselection, or dropping finished sentences.

        ``same_source``: every new row keeps the source of the row it replaces (beams reordered within their
        sentence), so the source side (cross-attention keys/values, mask) is left as it is instead of copied.
        """
        def pick(kv: KV) -> KV:
            return kv[0].index_select(0, index), kv[1].index_select(0, index)

        memory_kv, src_mask = ((self.memory_kv, self.src_mask) if same_source else
                               ([pick(kv) for kv in self.memory_kv], self.src_mask.index_select(0, index)))
        return DecoderState(memory_kv, src_mask, self.tokens.index_select(0, index),
                            None if self.self_kv is None else [c.select(index) for c in self.self_kv])


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        head_dim = cfg.d_model // cfg.num_heads
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model, padding_idx=PAD)
        nn.init.normal_(self.embed.weight, std=cfg.embed_init_std or cfg.d_model ** -0.5)  # x sqrt(D) at input
        self.sinusoidal = Sinusoidal(cfg.d_model, cfg.max_len + 2) if cfg.positional == "sinusoidal" else None
        rotary = Rotary(head_dim, cfg.max_len + 2) if cfg.positional == "rope" else None
        self.enc_bias = self.dec_bias = None
        if cfg.positional == "relative_bias":
            kw = dict(num_buckets=cfg.relative_buckets, max_distance=cfg.relative_max_distance)
            self.enc_bias = RelativeBias(cfg.num_heads, bidirectional=True, **kw)
            self.dec_bias = RelativeBias(cfg.num_heads, bidirectional=False, **kw)
        self.encoder = nn.ModuleList(EncoderBlock(cfg, rotary) for _ in range(cfg.encoder_layers))
        self.decoder = nn.ModuleList(DecoderBlock(cfg, rotary) for _ in range(cfg.decoder_layers))
        self.enc_ln, self.dec_ln = norm_layer(cfg), norm_layer(cfg)
        self.dropout = Dropout(cfg.dropout)

    def embed_tokens(self, ids: torch.Tensor, offset: int = 0, packing: Packing | None = None) -> torch.Tensor:
        """(B, S) ids -> (B, S, D), or its packed (T, D) rows with a ``packing``."""
        x = self.embed(ids) * math.sqrt(self.cfg.d_model)  # (B, S, D)
        if self.sinusoidal is not None:
            x = self.sinusoidal(x, offset)
        return self.dropout(x if packing is None else packing.pack(x))

    def encode(self, src: torch.Tensor, packing: Packing | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """src: (B, L) ids -> (memory (B, L, D), or packed (T, D) with a ``packing``; source padding mask
        (B, 1, 1, L))."""
        src_mask = padding_mask(src)
        mask = src_mask if self.enc_bias is None else src_mask + self.enc_bias(src.shape[1], src.shape[1])
        x = self.embed_tokens(src, packing=packing)
        for block in self.encoder:
            x = block(x, mask, packing)
        return self.enc_ln(x), src_mask

    def memory_keys_values(self, memory: torch.Tensor, packing: Packing | None = None) -> list[KV]:
        """Every decoder layer's cross-attention keys/values of the encoder output (B, L, D) or its packed
        (T, D) rows: 2 x (B, H, L, Dh) per layer."""
        return [block.cross_attn.keys_values(memory, packing=packing) for block in self.decoder]

    def decoder_stack(self, tgt_in: torch.Tensor, memory_kv: list[KV], src_mask: torch.Tensor,
                      packing: Packing | None = None) -> torch.Tensor:
        """Decoder hidden states (B, S, D) of a whole prefix (or packed (T, D) with a ``packing``), causal mask
        (+ relative bias) included."""
        S = tgt_in.shape[1]
        self_mask = causal_mask(S, tgt_in.device)  # (S, S)
        if self.dec_bias is not None:
            self_mask = self_mask + self.dec_bias(S, S)  # (H, S, S)
        x = self.embed_tokens(tgt_in, packing=packing)
        for block, kv in zip(self.decoder, memory_kv):
            x = block(x, kv, self_mask, src_mask, packing=packing)
        return self.dec_ln(x)

    def project(self, h: torch.Tensor) -> torch.Tensor:
        return h @ self.embed.weight.t()  # (..., V), tied output projection

    # -- incremental decoding: the interface the strategies in decoding.py use ---------------------------

    def start(self, src: torch.Tensor, cache: bool = True) -> DecoderState:
        """Encode once; cross-attention keys/values are computed here and never again."""
        memory, src_mask = self.encode(src)
        tokens = src.new_empty((src.shape[0], 0))
        return DecoderState(self.memory_keys_values(memory), src_mask, tokens, [] if cache else None)

    def decode_step(self, tokens: torch.Tensor, state: DecoderState) -> tuple[torch.Tensor, DecoderState]:
        """Feed one token per row, (N,) -> next-token logits (N, V) and the grown state.

        With a cache only the new token goes through the decoder: RoPE rotates it at its absolute position t,
        sinusoidal adds row t of the table, relative bias adds the bias row of query t; its keys/values are
        written into the caches in place (the state passed in is consumed). Without one, the whole prefix is
        recomputed (the reference the cache is tested and benchmarked against).
        """
        prefix = torch.cat([state.tokens, tokens[:, None]], dim=1)  # (N, t+1)
        if state.self_kv is None:
            h = self.decoder_stack(prefix, state.memory_kv, state.src_mask)[:, -1]  # (N, D)
            return self.project(h), replace(state, tokens=prefix)
        t = state.tokens.shape[1]
        bias = None if self.dec_bias is None else self.dec_bias(1, t + 1, offset=t)  # (H, 1, t+1)
        x = self.embed_tokens(tokens[:, None], offset=t)  # (N, 1, D)
        caches = state.self_kv or [None] * len(self.decoder)
        for i, (block, kv) in enumerate(zip(self.decoder, state.memory_kv)):
            if caches[i] is None:
                caches[i] = SelfCache.empty(kv[0])
            x = block(x, kv, bias, state.src_mask, past=caches[i], offset=t)
        return self.project(self.dec_ln(x[:, 0])), replace(state, tokens=prefix, self_kv=caches)

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, S, V) of every target position, or (N, V) of those where ``keep`` (B, S) is true.

        The first is the reference. Training passes ``keep = target != PAD`` and takes the padding-free path:
        under length bucketing about a third of the decoder's positions are padding, and both stacks run their
        position-wise layers on the real tokens alone (:class:`Packing`), the output projection (D x V, the
        largest matmul) and the softmax. The decoder keeps only the ``keep`` positions, not even the last real
        input token (EOS, whose prediction has no target): ``keep`` must be true on a prefix of each row, as it
        is under right padding (``collate``), so that no kept query attends to a position left out.
        """
        if keep is None:
            memory, src_mask = self.encode(src)
            return self.project(self.decoder_stack(tgt_in, self.memory_keys_values(memory), src_mask))
        src_rows = Packing(src != PAD)
        memory, src_mask = self.encode(src, src_rows)  # (T_src, D)
        memory_kv = self.memory_keys_values(memory, src_rows)
        return self.project(self.decoder_stack(tgt_in, memory_kv, src_mask, Packing(keep)))  # (N, V)


def build_model(cfg: ModelConfig) -> nn.Module:
    """The one factory: every part chosen by the config (``arch="marian"``: the Hugging Face peer)."""
    if cfg.arch == "marian":
        from .marian import MarianPeer

        return MarianPeer(cfg)
    return Transformer(cfg)


def restore_model(ckpt, hint: str = "pass a translation run folder") -> tuple[Transformer, ModelConfig]:
    """The model a checkpoint's config describes, with its weights, for resume and evaluation alike; one clear
    error for another project's or an incompatible checkpoint."""

    def build(config: dict) -> tuple[Transformer, ModelConfig]:
        cfg = ModelConfig(**config["model"])
        return build_model(cfg), cfg

    return checkpoint.restore_model(ckpt, "translation", build, hint=hint)
