"""Architecture peers: BART, T5 and Llama from transformers' config classes, randomly initialised, at our size,
behind our summarizer's interface.

The benchmark compares *architectures*, so everything else is shared: a peer trains in ``train.py``'s loop (same
tokenizer, batches, schedule, label smoothing, selection split and checkpoint choice), saves checkpoints of the
same layout, and decodes with ``decoding.py``'s beam search through the ``start`` / ``decode_step`` contract.
Each keeps its own architecture as published:

- ``bart``: ``BartForConditionalGeneration``, post-LayerNorm, learned positions, GELU FFN, shared embeddings;
- ``t5``: ``T5ForConditionalGeneration``, pre-RMSNorm, relative position buckets, ReLU FFN without biases;
- ``llama``: ``LlamaForCausalLM``, decoder-only: the document, then BOS as the separator, then the summary,
  with loss on the summary only. Documents are left-aligned into one block (left padding, positions counted
  from each row's first real token), so every row's summary starts at the same column.

None of them has our copy head. The width of each peer's FFN is solved so that its parameter count matches our
dense model's (every parameter of a dense model is active) within :data:`PARAM_TOLERANCE`; ``summarizer_config``
stores that width as the peer's ``d_ff``, and a test checks the match.

Dimension legend: B batch, L document length, S summary length, D d_model, V vocabulary, N rows (decoding).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from shared_utils.kv_cache import cache_rows

from .tokenizer import BOS, EOS, PAD

PARAM_TOLERANCE = 0.03  # |peer - dense| / dense parameters
FFN_MULTIPLE = 8  # solved FFN widths are rounded to this


def hf_config(cfg):
    """The transformers config of peer ``cfg.arch`` at ``cfg``'s sizes (``cfg.d_ff`` is the peer's own width)."""
    common = dict(vocab_size=cfg.vocab_size, pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS,
                  tie_word_embeddings=True)
    if cfg.arch == "bart":
        from transformers import BartConfig

        return BartConfig(d_model=cfg.d_model, encoder_layers=cfg.encoder_layers, decoder_layers=cfg.decoder_layers,
                          encoder_attention_heads=cfg.num_heads, decoder_attention_heads=cfg.num_heads,
                          encoder_ffn_dim=cfg.d_ff, decoder_ffn_dim=cfg.d_ff, dropout=cfg.dropout,
                          max_position_embeddings=max(cfg.max_source_len, cfg.max_target_len),
                          decoder_start_token_id=BOS, forced_eos_token_id=EOS, **common)
    if cfg.arch == "t5":
        from transformers import T5Config

        return T5Config(d_model=cfg.d_model, d_kv=cfg.d_model // cfg.num_heads, d_ff=cfg.d_ff,
                        num_layers=cfg.encoder_layers, num_decoder_layers=cfg.decoder_layers, num_heads=cfg.num_heads,
                        dropout_rate=cfg.dropout, feed_forward_proj="relu", decoder_start_token_id=BOS, **common)
    if cfg.arch == "llama":
        from transformers import LlamaConfig

        return LlamaConfig(hidden_size=cfg.d_model, intermediate_size=cfg.d_ff,
                           num_hidden_layers=cfg.encoder_layers + cfg.decoder_layers,
                           num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_heads,
                           max_position_embeddings=cfg.max_source_len + cfg.max_target_len,
                           attention_dropout=cfg.dropout, **common)
    raise ValueError(f"no peer architecture '{cfg.arch}'")


def hf_model(cfg) -> nn.Module:
    from transformers import BartForConditionalGeneration, LlamaForCausalLM, T5ForConditionalGeneration

    classes = {"bart": BartForConditionalGeneration, "t5": T5ForConditionalGeneration, "llama": LlamaForCausalLM}
    return classes[cfg.arch](hf_config(cfg))


def parameter_count(build, cfg) -> int:
    """Parameters of ``build(cfg)``, counted on the meta device (nothing is allocated or initialised)."""
    with torch.device("meta"):
        return sum(p.numel() for p in build(cfg).parameters())


def matched_ffn(peer_cfg, target: int) -> int:
    """The FFN width that brings the peer closest to ``target`` parameters. Parameters grow linearly with the
    width, so two counts give the line; the width is rounded to a multiple of :data:`FFN_MULTIPLE`."""
    low, high = (parameter_count(hf_model, replace(peer_cfg, d_ff=w)) for w in (FFN_MULTIPLE, 2 * FFN_MULTIPLE))
    width = FFN_MULTIPLE + (target - low) * FFN_MULTIPLE / (high - low)
    return max(FFN_MULTIPLE, FFN_MULTIPLE * round(width / FFN_MULTIPLE))


@dataclass
class Seq2SeqState:
    memory: torch.Tensor  # (N, L, D) encoder output
    src_keep: torch.Tensor  # (N, L) 1 for real document tokens
    cache: object | None  # transformers' EncoderDecoderCache after the first step

    def select(self, index: torch.Tensor) -> Seq2SeqState:
        from transformers import EncoderDecoderCache

        cache = None if self.cache is None else EncoderDecoderCache(
            cache_rows(self.cache.self_attention_cache, index), cache_rows(self.cache.cross_attention_cache, index))
        return Seq2SeqState(self.memory.index_select(0, index), self.src_keep.index_select(0, index), cache)


class Seq2SeqPeer(nn.Module):
    """BART or T5 with the forward, ``start`` and ``decode_step`` of :class:`moe_summarization.model.Summarizer`."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.hf = hf_model(cfg)

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor):
        """Teacher forcing: (logits (B, S, V), aux loss 0, no routing stats), as ``Summarizer.forward``."""
        logits = self.hf(input_ids=src, attention_mask=(src != PAD).long(), decoder_input_ids=tgt_in,
                         use_cache=False).logits
        return logits, logits.new_zeros(()), []

    def start(self, src: torch.Tensor) -> Seq2SeqState:
        keep = (src != PAD).long()
        return Seq2SeqState(self.hf.get_encoder()(input_ids=src, attention_mask=keep).last_hidden_state, keep, None)

    def decode_step(self, tokens: torch.Tensor, state: Seq2SeqState) -> tuple[torch.Tensor, Seq2SeqState]:
        out = self.hf(encoder_outputs=(state.memory,), attention_mask=state.src_keep, decoder_input_ids=tokens[:, None],
                      cache=state.cache, use_cache=True)
        return out.logits[:, -1], replace(state, cache=out.cache)  # (N, V)


def left_align(src: torch.Tensor) -> torch.Tensor:
    """Right-padded documents (B, L) -> the same rows padded on the left (B, L)."""
    L = src.shape[1]
    shift = L - (src != PAD).sum(1, keepdim=True)  # (B, 1) pads per row
    index = (torch.arange(L, device=src.device)[None, :] - shift) % L  # (B, L) pads rotate to the front
    return src.gather(1, index)


def positions(keep: torch.Tensor) -> torch.Tensor:
    """(B, T) 1 for real tokens -> each token's position counted from its row's first real token (pads: 0)."""
    return (keep.cumsum(1) - 1).clamp_min(0)


@dataclass
class DecoderOnlyState:
    keep: torch.Tensor  # (N, t) 1 for real tokens fed so far (document, then the summary)
    next_position: torch.Tensor  # (N,) the position of the next token
    cache: object  # transformers' DynamicCache

    def select(self, index: torch.Tensor) -> DecoderOnlyState:
        return DecoderOnlyState(self.keep.index_select(0, index), self.next_position.index_select(0, index),
                                cache_rows(self.cache, index))


class DecoderOnlyPeer(nn.Module):
    """Llama reading ``document BOS summary``, with the interface of ``Summarizer``."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.hf = hf_model(cfg)

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor):
        """The summary's logits (B, S, V) given the document: only the last S positions are projected."""
        ids = torch.cat([left_align(src), tgt_in], dim=1)  # (B, L + S); tgt_in starts with BOS, the separator
        keep = (ids != PAD).long()
        h = self.hf.model(input_ids=ids, attention_mask=keep, position_ids=positions(keep),
                          use_cache=False).last_hidden_state[:, src.shape[1]:]  # (B, S, D)
        logits = self.hf.lm_head(h)
        return logits, logits.new_zeros(()), []

    def start(self, src: torch.Tensor) -> DecoderOnlyState:
        from transformers import DynamicCache

        ids = left_align(src)
        keep = (ids != PAD).long()
        cache = DynamicCache()
        self.hf.model(input_ids=ids, attention_mask=keep, position_ids=positions(keep), cache=cache, use_cache=True)
        return DecoderOnlyState(keep, keep.sum(1), cache)

    def decode_step(self, tokens: torch.Tensor, state: DecoderOnlyState) -> tuple[torch.Tensor, DecoderOnlyState]:
        keep = torch.cat([state.keep, state.keep.new_ones((tokens.shape[0], 1))], dim=1)  # (N, t + 1)
        out = self.hf(input_ids=tokens[:, None], attention_mask=keep, position_ids=state.next_position[:, None],
                      cache=state.cache, use_cache=True)
        return out.logits[:, -1], DecoderOnlyState(keep, state.next_position + 1, out.cache)


def build_peer(cfg) -> nn.Module:
    return DecoderOnlyPeer(cfg) if cfg.arch == "llama" else Seq2SeqPeer(cfg)
