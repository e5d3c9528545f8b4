"""Batches of sequence pairs built to a token budget, with length bucketing: for every seq2seq project.

``data`` is anything with ``src`` and ``tgt`` lists of token-id lists (each project's ``Encoded``). The order
of batches depends only on the seed and the epoch, so a run resumes at the exact batch where it stopped.
"""

from __future__ import annotations

import random
from typing import Protocol

import torch

from shared_utils.errors import UserError


class Pairs(Protocol):
    src: list[list[int]]
    tgt: list[list[int]]


def token_batches(data: Pairs, batch_tokens: int, seed: int, epoch: int) -> list[list[int]]:
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


def collate(data: Pairs, idx: list[int], device: torch.device, pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(src (B, L), tgt (B, S)) right-padded with ``pad_id``."""

    def pad(rows: list[list[int]]) -> torch.Tensor:
        out = torch.full((len(rows), max(len(r) for r in rows)), pad_id, dtype=torch.long)
        for i, r in enumerate(rows):
            out[i, : len(r)] = torch.tensor(r)
        return out.to(device)

    return pad([data.src[i] for i in idx]), pad([data.tgt[i] for i in idx])


class EpochBatches:
    """The training batches of every step: :func:`token_batches` in a new deterministic order each epoch, and
    under DDP one batch per rank per step. Where the run stands (``progress.epoch``, ``progress.batch_pos``)
    lives in the checkpoint's progress, so a resumed run takes the very next batch."""

    def __init__(self, data: Pairs, batch_tokens: int, seed: int, epoch: int, world: int = 1):
        self.data, self.batch_tokens, self.seed, self.world = data, batch_tokens, seed, world
        self.batches = token_batches(data, batch_tokens, seed, epoch)
        if len(self.batches) < world:
            raise UserError(f"the training data makes only {len(self.batches)} batch(es) of --batch-tokens "
                            f"{batch_tokens}, fewer than the {world} processes: lower --batch-tokens")

    def take(self, progress, rank: int = 0) -> list[int]:
        """This rank's batch of the next step; moves ``progress`` on (to a new epoch's order when one ends)."""
        if progress.batch_pos + self.world > len(self.batches):
            progress.epoch, progress.batch_pos = progress.epoch + 1, 0
            self.batches = token_batches(self.data, self.batch_tokens, self.seed, progress.epoch)
        idx = self.batches[progress.batch_pos + rank]
        progress.batch_pos += self.world
        return idx


def micro_batches(idx: list[int], grad_accum: int) -> list[list[int]]:
    """One batch split for gradient accumulation: every ``grad_accum``-th row, so each part has similar lengths."""
    return [idx[i:: grad_accum] for i in range(grad_accum) if idx[i:: grad_accum]]
