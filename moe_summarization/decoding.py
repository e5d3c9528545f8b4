"""Batched beam search for the summarizer, over the model's ``start`` / ``decode_step`` interface:
length penalty, minimum and maximum length, no-repeat-n-gram, n-best output.

The same algorithm as the translation project's ``decoding.py`` (that project is the place to study
decoding strategies); it is kept here so this project can be copied out alone (CONVENTIONS 13).

Dimension legend: B documents, K beams, N live rows (documents x beams), V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

from .tokenizer import BOS, EOS

NEG_INF = float("-inf")


@runtime_checkable
class DecoderState(Protocol):
    """What a model carries between steps (the KV cache); rows follow the batch as decoding reorders it."""

    def select(self, index: torch.Tensor) -> DecoderState:
        """The rows ``index`` (N',) of the state, in that order (beam reselection, finished rows pruned)."""


@runtime_checkable
class Decoder(Protocol):
    """The contract between the summarizer and beam search (the same as the translation project's)."""

    def start(self, src: torch.Tensor) -> DecoderState:
        """Encode src (B, L) once; the returned state holds one row per document."""

    def decode_step(self, tokens: torch.Tensor, state: DecoderState) -> tuple[torch.Tensor, DecoderState]:
        """Feed one token per row, (N,) -> next-token logits or log-probabilities (N, V) and the new state."""


@dataclass
class Hypothesis:
    tokens: list[int]  # generated ids, EOS last
    logprob: float  # sum of the model's token log-probabilities
    score: float  # logprob / length**length_penalty: what the search ranks by


def banned_ngram_tokens(history: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, token) pairs that would complete an n-gram already in the row's history (N, t)."""
    grams = history.unfold(1, n, 1)  # (N, t-n+1, n)
    hits = (grams[:, :, :-1] == history[:, history.shape[1] - n + 1:][:, None, :]).all(-1)  # (N, t-n+1)
    rows, where = hits.nonzero(as_tuple=True)
    return rows, grams[rows, where, -1]


def constrain(logprobs: torch.Tensor, step: int, history: torch.Tensor, *, min_len: int, max_len: int,
              no_repeat_ngram: int) -> torch.Tensor:
    """-inf for EOS before ``min_len`` tokens, for everything but EOS at ``max_len``, and for repeated n-grams."""
    logprobs = logprobs.clone()
    if step < min_len:
        logprobs[:, EOS] = NEG_INF
    if step + 1 >= max_len:
        eos = logprobs[:, EOS].clone()
        logprobs.fill_(NEG_INF)
        logprobs[:, EOS] = eos
    if no_repeat_ngram and history.shape[1] >= no_repeat_ngram:
        logprobs[banned_ngram_tokens(history, no_repeat_ngram)] = NEG_INF
    return logprobs


@torch.no_grad()
def beam_search(model: Decoder, src: torch.Tensor, *, beam_size: int = 4, length_penalty: float = 1.0, min_len: int = 0,
                max_len: int = 48, no_repeat_ngram: int = 3, nbest: int = 1) -> list[list[Hypothesis]]:
    """The ``nbest`` best finished summaries per document of src (B, L); ``beam_size`` 1 is greedy.

    Each step keeps the 2K best extensions per document; those ending in EOS among the top K are finished
    (score = logprob / length**length_penalty), the K best others continue. A document is done when it has K
    finished hypotheses (early stopping, as fairseq and ``generate(early_stopping=True)``); done documents
    leave the batch.
    """
    B, K, device = src.shape[0], beam_size, src.device
    state = model.start(src).select(torch.arange(B, device=device).repeat_interleave(K))  # row b*K + k
    scores = torch.full((B, K), NEG_INF, device=device)
    scores[:, 0] = 0.0
    seqs = torch.empty((B * K, 0), dtype=torch.long, device=device)
    tokens = torch.full((B * K,), BOS, dtype=torch.long, device=device)
    docs = torch.arange(B, device=device)  # original document of each live document
    finished: list[list[Hypothesis]] = [[] for _ in range(B)]
    for step in range(max_len):
        n = docs.numel()
        logits, state = model.decode_step(tokens, state)
        lp = constrain(logits.float().log_softmax(-1), step, seqs, min_len=min_len, max_len=max_len,
                       no_repeat_ngram=no_repeat_ngram)  # (n*K, V)
        V = lp.shape[-1]
        top, idx = (scores[:, :, None] + lp.view(n, K, V)).view(n, K * V).topk(2 * K, dim=1)  # (n, 2K)
        beam, tok = idx // V, idx % V
        is_eos = tok == EOS
        filed = is_eos & (torch.arange(2 * K, device=device) < K) & torch.isfinite(top)
        for i, j in filed.nonzero().tolist():
            logprob = float(top[i, j])
            finished[int(docs[i])].append(Hypothesis(seqs[i * K + int(beam[i, j])].tolist() + [EOS], logprob,
                                                     logprob / (step + 1) ** length_penalty))
        scores, pos = top.masked_fill(is_eos, NEG_INF).topk(K, dim=1)  # (n, K) the continuing beams
        rows = (torch.arange(n, device=device)[:, None] * K + beam.gather(1, pos)).view(-1)
        tokens = tok.gather(1, pos).view(-1)
        seqs = torch.cat([seqs.index_select(0, rows), tokens[:, None]], dim=1)
        state = state.select(rows)
        done = [len(finished[int(d)]) >= K or not bool(torch.isfinite(scores[i, 0])) for i, d in enumerate(docs)]
        if all(done):
            break
        if any(done):
            keep = torch.tensor([not d for d in done], device=device).nonzero()[:, 0]
            docs, scores = docs[keep], scores[keep]
            rows = (keep[:, None] * K + torch.arange(K, device=device)).view(-1)
            state, seqs, tokens = state.select(rows), seqs[rows], tokens[rows]
    return [sorted(hyps, key=lambda h: -h.score)[:nbest] for hyps in finished]
