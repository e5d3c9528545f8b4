"""The Hugging Face Marian peer: ``transformers.MarianMTModel`` at our sizes, behind our model's interface.

The comparison the project makes is between two *models*, so everything else is shared: the peer trains in
``train.py``'s loop (same batches, schedule, label smoothing, selection split and checkpoint choice), saves
checkpoints of the same layout, and decodes with the strategies of ``decoding.py`` (the same greedy and beam
search, length penalty and limits) through the :class:`~translation.decoding.Decoder` contract below. A test
checks that our greedy search over this wrapper writes exactly what ``MarianMTModel.generate`` writes.

Marian's own architecture is kept: post-LayerNorm blocks, static sinusoidal positions, scaled embeddings
shared by encoder, decoder and output, a final logits bias. ``ModelConfig(arch="marian")`` builds it;
``positional`` and ``fused_attention`` do not apply.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from shared_utils.kv_cache import cache_rows

from .config import ModelConfig
from .tokenizer import BOS, EOS, PAD  # the tokenizer's special ids, as our model uses them


def marian_config(cfg: ModelConfig):
    from transformers import MarianConfig

    return MarianConfig(vocab_size=cfg.vocab_size, d_model=cfg.d_model, encoder_layers=cfg.encoder_layers,
                        decoder_layers=cfg.decoder_layers, encoder_attention_heads=cfg.num_heads,
                        decoder_attention_heads=cfg.num_heads, encoder_ffn_dim=cfg.d_ff, decoder_ffn_dim=cfg.d_ff,
                        dropout=cfg.dropout, attention_dropout=cfg.attention_dropout,
                        activation_dropout=cfg.activation_dropout, max_position_embeddings=cfg.max_len + 2,
                        pad_token_id=PAD, eos_token_id=EOS, forced_eos_token_id=EOS, decoder_start_token_id=BOS,
                        bos_token_id=BOS,
                        share_encoder_decoder_embeddings=True, tie_word_embeddings=True, scale_embedding=True)


@dataclass
class MarianState:
    """The peer's decoding state; like our own, every tensor is indexed by row first."""

    memory: torch.Tensor  # (N, L, D) encoder output
    src_keep: torch.Tensor  # (N, L) 1 for real source tokens
    tokens: torch.Tensor  # (N, t) fed so far, BOS first
    cache: object | None  # transformers' EncoderDecoderCache after the first step; None before it
    use_cache: bool

    def select(self, index: torch.Tensor, same_source: bool = False) -> MarianState:
        """Rows ``index``; ``same_source`` (beams reordered within a sentence) leaves the source side as it is."""
        from transformers import EncoderDecoderCache

        def source(x):
            return x if same_source else x.index_select(0, index)

        cache = None if self.cache is None else EncoderDecoderCache(
            cache_rows(self.cache.self_attention_cache, index),
            self.cache.cross_attention_cache if same_source else cache_rows(self.cache.cross_attention_cache, index))
        return replace(self, memory=source(self.memory), src_keep=source(self.src_keep),
                       tokens=self.tokens.index_select(0, index), cache=cache)


class MarianPeer(nn.Module):
    """``MarianMTModel`` with the forward, ``start`` and ``decode_step`` of :class:`translation.model.Transformer`."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        from transformers import MarianMTModel

        self.cfg = cfg
        self.hf = MarianMTModel(marian_config(cfg))

    def project(self, h: torch.Tensor) -> torch.Tensor:
        return self.hf.lm_head(h) + self.hf.final_logits_bias[0]  # (..., V)

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, S, V), or (N, V) where ``keep`` (B, S) is true, as :meth:`Transformer.forward`."""
        h = self.hf.model(input_ids=src, attention_mask=(src != PAD).long(), decoder_input_ids=tgt_in,
                          use_cache=False).last_hidden_state  # (B, S, D)
        return self.project(h if keep is None else h[keep])

    def start(self, src: torch.Tensor, cache: bool = True) -> MarianState:
        keep = (src != PAD).long()
        memory = self.hf.model.encoder(input_ids=src, attention_mask=keep).last_hidden_state
        return MarianState(memory, keep, src.new_empty((src.shape[0], 0)), None, cache)

    def decode_step(self, tokens: torch.Tensor, state: MarianState) -> tuple[torch.Tensor, MarianState]:
        prefix = torch.cat([state.tokens, tokens[:, None]], dim=1)  # (N, t+1)
        out = self.hf.model.decoder(input_ids=prefix if not state.use_cache else tokens[:, None],
                                    encoder_hidden_states=state.memory, encoder_attention_mask=state.src_keep,
                                    cache=state.cache if state.use_cache else None, use_cache=state.use_cache)
        logits = self.project(out.last_hidden_state[:, -1])  # (N, V)
        return logits, replace(state, tokens=prefix, cache=out.cache if state.use_cache else None)
