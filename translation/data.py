"""Sentence pairs -> token ids -> batches built to a token budget, with length bucketing.

Long sentences are truncated to ``max_len`` tokens (counted and logged); the order of batches depends only on
the seed and the epoch, so a run resumes at the exact batch where it stopped.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from .model import BOS, EOS, PAD


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


def token_batches(data: Encoded, batch_tokens: int, seed: int, epoch: int) -> list[list[int]]:
    """Index batches whose padded size (rows x (longest source + longest target)) fits ``batch_tokens``.

    Sentences are shuffled, sorted by length inside pools of ~100 batches (little padding, still random),
    packed greedily, and the batches shuffled again. Deterministic for (seed, epoch).
    """
    rng = random.Random(seed * 100003 + epoch)
    order = list(range(len(data.src)))
    rng.shuffle(order)
    lengths = [(len(data.src[i]), len(data.tgt[i])) for i in range(len(order))]
    pool = max(1, 100 * batch_tokens // 40)
    batches: list[list[int]] = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start: start + pool], key=lambda i: lengths[i])
        batch, max_s, max_t = [], 0, 0
        for i in chunk:
            s, t = lengths[i]
            new_s, new_t = max(max_s, s), max(max_t, t)
            if batch and (len(batch) + 1) * (new_s + new_t) > batch_tokens:
                batches.append(batch)
                batch, new_s, new_t = [], s, t
            batch.append(i)
            max_s, max_t = new_s, new_t
        if batch:
            batches.append(batch)
    rng.shuffle(batches)
    return batches


def collate(data: Encoded, idx: list[int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(src (B, L), tgt (B, S)) right-padded with PAD."""

    def pad(rows: list[list[int]]) -> torch.Tensor:
        out = torch.full((len(rows), max(len(r) for r in rows)), PAD, dtype=torch.long)
        for i, r in enumerate(rows):
            out[i, : len(r)] = torch.tensor(r)
        return out.to(device)

    return pad([data.src[i] for i in idx]), pad([data.tgt[i] for i in idx])
