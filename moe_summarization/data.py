"""Documents and summaries -> token ids, plus the corpus token counts the hash router balances on.

Documents longer than ``max_source_len`` tokens are truncated (counted and logged); summaries are cut to
``max_target_len``. Batching to a token budget is ``shared_utils.batching``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from .tokenizer import BOS, EOS


@dataclass
class Encoded:
    src: list[list[int]]  # document ids + EOS
    tgt: list[list[int]]  # BOS + summary ids + EOS
    truncated: int  # documents cut to max_source_len


def encode_documents(tok, docs, max_source_len: int, max_target_len: int) -> Encoded:
    src_ids = tok.encode_batch([d.document for d in docs])
    tgt_ids = tok.encode_batch([d.summary for d in docs])
    src, tgt, truncated = [], [], 0
    for s, t in zip(src_ids, tgt_ids):
        truncated += len(s.ids) > max_source_len - 1
        src.append(s.ids[: max_source_len - 1] + [EOS])
        tgt.append([BOS] + t.ids[: max_target_len - 2] + [EOS])
    return Encoded(src, tgt, truncated)


def token_counts(data: Encoded, vocab_size: int) -> list[int]:
    """How often each id occurs on both sides: what frequency-balanced hash routing spreads evenly."""
    counts = Counter(i for rows in (data.src, data.tgt) for row in rows for i in row)
    return [counts.get(i, 0) for i in range(vocab_size)]
