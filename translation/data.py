"""Sentence pairs -> token ids. Long sentences are truncated to ``max_len`` tokens (counted and logged);
batching to a token budget is ``shared_utils.batching``."""

from __future__ import annotations

from dataclasses import dataclass

from .model import BOS, EOS


@dataclass
class Encoded:
    src: list[list[int]]  # source ids + EOS
    tgt: list[list[int]]  # BOS + target ids + EOS
    truncated: int  # sentences cut to max_len


def encode_pairs(tok, pairs, max_len: int) -> Encoded:
    """Tokenize pairs; each side keeps at most ``max_len`` tokens including its specials."""
    src_ids = tok.encode_batch([p.src for p in pairs])
    tgt_ids = tok.encode_batch([p.tgt for p in pairs])
    src, tgt, truncated = [], [], 0
    for s, t in zip(src_ids, tgt_ids):
        s_ids, t_ids = s.ids[: max_len - 1], t.ids[: max_len - 2]
        truncated += len(s.ids) > max_len - 1 or len(t.ids) > max_len - 2
        src.append(s_ids + [EOS])
        tgt.append([BOS] + t_ids + [EOS])
    return Encoded(src, tgt, truncated)
