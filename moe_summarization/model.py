"""The summarizer: a pre-LayerNorm encoder-decoder Transformer whose every ``moe_every``-th FFN is a sparse
``MoELayer`` (Switch / GShard style), or dense throughout for the baseline. Built by ``build_model(cfg)``.

    document ids --embed*sqrt(D)+sinusoidal--> [attn, FFN | MoE] x N --LN--> memory
    summary ids  --embed*sqrt(D)+sinusoidal--> [self-attn, cross-attn, FFN | MoE] x N --LN--> @ embed^T
                                                                          (+ copy from the document, optional)

Padding never reaches an expert: MoE layers see only the real tokens (so pads neither use capacity nor
count in the load statistics). Hash routing routes by the id of the token at each position. Every forward
returns the summed, already weighted auxiliary loss and the per-layer routing statistics next to the scores.

With ``cfg.copy`` the output layer is a pointer-generator (See et al. 2017): the next-token distribution mixes
the vocabulary softmax with an attention distribution over the document's own tokens, so a name or number the
summary shares with the document can be copied instead of generated. Headlines are mostly such words.

Dimension legend: B batch, L document length, S summary length, D d_model, V vocabulary, N rows (decoding).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from shared_utils import checkpoint

from .attention import MultiHeadAttention
from .config import SummarizerConfig
from .moe import FFN, MoELayer
from .tokenizer import PAD

KV = tuple[torch.Tensor, torch.Tensor]  # keys, values: 2 x (B, H, L, Dh)


def sinusoidal_table(length: int, d_model: int) -> torch.Tensor:
    """(length, D): sin on even dims, cos on odd ones (Vaswani et al. 2017)."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    inv_freq = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    table = torch.zeros(length, d_model)
    table[:, 0::2], table[:, 1::2] = torch.sin(pos * inv_freq), torch.cos(pos * inv_freq)
    return table


class CopyHead(nn.Module):
    """Pointer-generator output: p = g * softmax(logits) + (1 - g) * sum of copy attention over source positions
    holding each token, with the gate g = sigmoid(w . [h, context]) (See et al. 2017). One attention head of its
    own (the decoder's attention heads stay free to do other work); the vocabulary is shared, so no extended
    vocabulary is needed. Returns log-probabilities, computed in fp32."""

    def __init__(self, d_model: int):
        super().__init__()
        self.query = nn.Linear(d_model, d_model, bias=False)
        self.gate = nn.Linear(2 * d_model, 1)

    def forward(self, h: torch.Tensor, logits: torch.Tensor, memory: torch.Tensor, src: torch.Tensor,
                src_mask: torch.Tensor) -> torch.Tensor:
        """h (B, S, D) final decoder states, logits (B, S, V), memory (B, L, D), src (B, L), src_mask (B, 1, 1, L)
        -> log p(next token) (B, S, V)."""
        with torch.autocast(h.device.type, enabled=False):  # fp32 also under bf16 autocast: mixing probabilities
            h, memory = h.float(), memory.float()
            scores = self.query(h) @ memory.transpose(1, 2) / math.sqrt(h.shape[-1])  # (B, S, L)
            attn = scores.masked_fill(~src_mask[:, 0], float("-inf")).softmax(-1)  # (B, S, L)
            gate = torch.sigmoid(self.gate(torch.cat([h, attn @ memory], dim=-1)))  # (B, S, 1)
            probs = gate * logits.float().softmax(-1)  # (B, S, V)
            probs = probs.scatter_add(-1, src[:, None, :].expand(-1, h.shape[1], -1), (1 - gate) * attn)
            return probs.clamp_min(1e-12).log()


class Routed:
    """Collects the aux losses and statistics of the MoE layers during one forward pass."""

    def __init__(self, device: torch.device):
        self.aux = torch.zeros((), device=device)
        self.stats: list[dict] = []


class FeedForward(nn.Module):
    """The dense FFN or the MoE layer behind one call; the MoE sees only non-pad positions."""

    def __init__(self, cfg: SummarizerConfig, sparse: bool):
        super().__init__()
        self.moe = MoELayer(cfg.moe) if sparse else None
        self.ffn = None if sparse else FFN(cfg.d_model, cfg.d_ff)

    def forward(self, x: torch.Tensor, ids: torch.Tensor, routed: Routed) -> torch.Tensor:
        if self.moe is None:
            return self.ffn(x)
        real = ids != PAD  # (B, S)
        result = self.moe(x[real], ids[real])  # (T, D) real tokens only
        routed.aux = routed.aux + result.aux_loss
        routed.stats.append(result.stats)
        return x.new_zeros(x.shape).index_put((real,), result.out)  # pads get 0: the residual passes


class EncoderBlock(nn.Module):
    def __init__(self, cfg: SummarizerConfig, sparse: bool):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.attn = MultiHeadAttention(cfg.d_model, cfg.num_heads, cfg.dropout)
        self.ffn, self.dropout = FeedForward(cfg, sparse), nn.Dropout(cfg.dropout)

    def forward(self, x, ids, mask, routed: Routed):
        h = self.ln1(x)
        x = x + self.dropout(self.attn(h, self.attn.project_kv(h), mask))
        return x + self.dropout(self.ffn(self.ln2(x), ids, routed))


class DecoderBlock(nn.Module):
    def __init__(self, cfg: SummarizerConfig, sparse: bool):
        super().__init__()
        self.ln1, self.ln2, self.ln3 = (nn.LayerNorm(cfg.d_model) for _ in range(3))
        self.self_attn = MultiHeadAttention(cfg.d_model, cfg.num_heads, cfg.dropout)
        self.cross_attn = MultiHeadAttention(cfg.d_model, cfg.num_heads, cfg.dropout)
        self.ffn, self.dropout = FeedForward(cfg, sparse), nn.Dropout(cfg.dropout)

    def forward(self, x, ids, memory_kv: KV, self_mask, cross_mask, routed: Routed, past: KV | None = None):
        """x: (B, S, D); past: self-attention keys/values of earlier positions. Returns (x, all keys/values)."""
        h = self.ln1(x)
        k, v = self.self_attn.project_kv(h)  # 2 x (B, H, S, Dh)
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        x = x + self.dropout(self.self_attn(h, (k, v), self_mask))
        x = x + self.dropout(self.cross_attn(self.ln2(x), memory_kv, cross_mask))
        return x + self.dropout(self.ffn(self.ln3(x), ids, routed)), (k, v)


@dataclass
class DecoderState:
    """Incremental decoding state, indexed by row first so :meth:`select` reorders or prunes all of it."""

    memory_kv: list[KV]  # per decoder layer: cross-attention keys/values, computed once per document
    src_mask: torch.Tensor  # (N, 1, 1, L) bool, True = real token
    tokens: torch.Tensor  # (N, t) fed so far, BOS first
    self_kv: list[KV]  # per decoder layer: self-attention keys/values of those t tokens
    memory: torch.Tensor  # (N, L, D) encoder output: what the copy head attends to
    src: torch.Tensor  # (N, L) document ids: what the copy head copies

    def select(self, index: torch.Tensor) -> DecoderState:
        def pick(kv: KV) -> KV:
            return kv[0].index_select(0, index), kv[1].index_select(0, index)

        return DecoderState([pick(kv) for kv in self.memory_kv], self.src_mask.index_select(0, index),
                            self.tokens.index_select(0, index), [pick(kv) for kv in self.self_kv],
                            self.memory.index_select(0, index), self.src.index_select(0, index))


class Summarizer(nn.Module):
    def __init__(self, cfg: SummarizerConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model, padding_idx=PAD)
        nn.init.normal_(self.embed.weight, std=cfg.d_model ** -0.5)  # x sqrt(D) at input -> unit variance
        table_len = max(cfg.max_source_len, cfg.max_target_len) + 2
        self.register_buffer("positions", sinusoidal_table(table_len, cfg.d_model), persistent=False)
        self.encoder = nn.ModuleList(EncoderBlock(cfg, cfg.is_moe_layer(i)) for i in range(cfg.encoder_layers))
        self.decoder = nn.ModuleList(DecoderBlock(cfg, cfg.is_moe_layer(i)) for i in range(cfg.decoder_layers))
        self.enc_ln, self.dec_ln = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.dropout = nn.Dropout(cfg.dropout)
        self.copy = CopyHead(cfg.d_model) if cfg.copy else None

    def embed_tokens(self, ids: torch.Tensor, offset: int = 0) -> torch.Tensor:
        x = self.embed(ids) * math.sqrt(self.cfg.d_model) + self.positions[offset: offset + ids.shape[1]]
        return self.dropout(x)  # (B, S, D)

    def encode(self, src: torch.Tensor, routed: Routed) -> tuple[torch.Tensor, torch.Tensor]:
        """src (B, L) -> memory (B, L, D) and its mask (B, 1, 1, L), True = real token."""
        mask = (src != PAD)[:, None, None, :]
        x = self.embed_tokens(src)
        for block in self.encoder:
            x = block(x, src, mask, routed)
        return self.enc_ln(x), mask

    def output(self, x: torch.Tensor, memory: torch.Tensor, src: torch.Tensor, src_mask: torch.Tensor):
        """Final decoder states (B, S, D) -> next-token scores (B, S, V): logits, or with the copy head
        log-probabilities (either way ``log_softmax`` of them is the model's distribution)."""
        h = self.dec_ln(x)
        logits = h @ self.embed.weight.t()
        return logits if self.copy is None else self.copy(h, logits, memory, src, src_mask)

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[dict]]:
        """Teacher forcing: (scores (B, S, V), weighted aux loss, routing stats of every MoE layer)."""
        routed = Routed(src.device)
        memory, src_mask = self.encode(src, routed)
        S = tgt_in.shape[1]
        causal = torch.ones(S, S, dtype=torch.bool, device=src.device).tril()  # (S, S)
        x = self.embed_tokens(tgt_in)
        for block in self.decoder:
            x, _ = block(x, tgt_in, block.cross_attn.project_kv(memory), causal, src_mask, routed)
        return self.output(x, memory, src, src_mask), routed.aux, routed.stats

    # -- incremental decoding: the interface decoding.py uses ------------------------------------------------

    def start(self, src: torch.Tensor) -> DecoderState:
        memory, src_mask = self.encode(src, Routed(src.device))
        memory_kv = [block.cross_attn.project_kv(memory) for block in self.decoder]
        return DecoderState(memory_kv, src_mask, src.new_empty((src.shape[0], 0)), [], memory, src)

    def decode_step(self, tokens: torch.Tensor, state: DecoderState) -> tuple[torch.Tensor, DecoderState]:
        """One new token per row (N,) -> next-token scores (N, V); only the new position is computed."""
        t = state.tokens.shape[1]
        ids = tokens[:, None]  # (N, 1)
        x, routed, new_kv = self.embed_tokens(ids, offset=t), Routed(tokens.device), []
        for i, (block, kv) in enumerate(zip(self.decoder, state.memory_kv)):
            x, self_kv = block(x, ids, kv, None, state.src_mask, routed, past=state.self_kv[i] if t else None)
            new_kv.append(self_kv)
        prefix = torch.cat([state.tokens, ids], dim=1)
        scores = self.output(x, state.memory, state.src, state.src_mask)[:, 0]
        return scores, replace(state, tokens=prefix, self_kv=new_kv)

    def set_hash_table(self, table: torch.Tensor) -> None:
        """Give every hash-routed layer the (frequency-balanced) token -> expert table."""
        for module in self.modules():
            if isinstance(module, MoELayer) and module.cfg.router == "hash":
                module.router.table.copy_(table)


def build_model(cfg: SummarizerConfig) -> nn.Module:
    """Our summarizer, or the architecture peer ``cfg.arch`` names (peers.py)."""
    if cfg.arch != "ours":
        from .peers import build_peer

        return build_peer(cfg)
    return Summarizer(cfg)


def restore_model(ckpt, hint: str = "pass a moe_summarization run folder") -> tuple[Summarizer, SummarizerConfig]:
    """The model a checkpoint's config describes, with its weights; one clear error for another project's or
    an incompatible checkpoint."""

    def build(config: dict) -> tuple[Summarizer, SummarizerConfig]:
        cfg = SummarizerConfig(**config["model"])
        return build_model(cfg), cfg

    return checkpoint.restore_model(ckpt, "moe_summarization", build, hint=hint)


def active_ffn_parameters(model: Summarizer) -> int:
    """FFN parameters one token passes through: the dense FFNs, and k experts per MoE layer (the router's
    D x E weights are left out: they score experts, they do not transform the token)."""
    total = 0
    for module in model.modules():
        if isinstance(module, FFN):
            total += sum(p.numel() for p in module.parameters())
        elif isinstance(module, MoELayer):
            per_expert = sum(p.numel() for p in module.experts.parameters()) // module.cfg.num_experts
            total += module.cfg.experts_per_token * per_expert
    return total


def label_smoothed_loss(logits: torch.Tensor, target: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Mean cross-entropy over non-pad targets: (B, S, V), (B, S) -> scalar. Takes logits or log-probabilities
    (the copy head's): ``cross_entropy`` log-softmaxes its input, which leaves log-probabilities unchanged."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), target.reshape(-1), ignore_index=PAD,
                           label_smoothing=smoothing)

