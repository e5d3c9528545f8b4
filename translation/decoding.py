"""Decoding strategies, as functions outside the model: greedy, batched beam search, top-k / top-p sampling.

They need only the :class:`Decoder` interface of the model (``Transformer`` implements it; the tests use a toy
decoder with hand-set probabilities):

    state = model.start(src, cache=True)             # encode once; cross-attention keys/values cached
    logits, state = model.decode_step(tokens, state)  # (N,) new tokens -> (N, V) next-token logits
    state = state.select(index)                       # rows reordered (beam reselection) or pruned
    state = state.select(index, same_source=True)     # beams reordered within their sentences

Every strategy returns :class:`Hypothesis` objects whose ``logprob`` is the sum of the model's own token
log-probabilities (before temperature or filtering), so a hypothesis re-scored with teacher forcing gives the
same number. Finished rows leave the batch (``state.select``), so a batch costs what its live rows cost.

What a step costs beyond the model: beam search ranks each row's 2K best tokens instead of all K x V
extensions, its bookkeeping (finished counts, the stopping rule) is vectorised over sentences with Python
touching only the hypotheses that end, and reordering beams leaves the source side of the state in place.

Dimension legend: B sentences, K beams, N live rows (sentences, or sentences x beams), V vocabulary.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Protocol, runtime_checkable

import torch

from shared_utils.errors import UserError

from .model import BOS, EOS, PAD

NEG_INF = float("-inf")
STRATEGIES = ("greedy", "beam", "sample")


@runtime_checkable
class DecoderState(Protocol):
    """What a model carries between steps (the KV cache); rows follow the batch as decoding reorders it."""

    def select(self, index: torch.Tensor, same_source: bool = False) -> DecoderState:
        """The rows ``index`` (N',) of the state, in that order (beam reselection, finished rows pruned).
        ``same_source``: each new row has the source of the row it replaces, so source-side tensors may stay."""


@runtime_checkable
class Decoder(Protocol):
    """The whole contract between a model and every decoding strategy here."""

    def start(self, src: torch.Tensor, cache: bool = True) -> DecoderState:
        """Encode src (B, L) once; the returned state holds one row per sentence."""

    def decode_step(self, tokens: torch.Tensor, state: DecoderState) -> tuple[torch.Tensor, DecoderState]:
        """Feed one token per row, (N,) -> next-token logits (N, V) and the state after it."""


@dataclass
class Hypothesis:
    tokens: list[int]  # generated ids, EOS included when the hypothesis ended with it
    logprob: float  # sum of the model's log-probabilities of those tokens
    score: float  # what the strategy ranked by: logprob / length**length_penalty for beam search, else logprob


def max_new_tokens(src: torch.Tensor, cap: int, ratio: float = 2.0, extra: int = 10) -> torch.Tensor:
    """Per-sentence length limit (EOS included): ``ratio`` x the source length + ``extra``, at most ``cap``.

    Translations rarely run past twice their source; an untrained model that never says EOS stops early.
    src (B, L) -> (B,) long.
    """
    return length_limits((src != PAD).sum(1), cap, ratio, extra)


def length_limits(lengths: torch.Tensor, cap: int, ratio: float = 2.0, extra: int = 10) -> torch.Tensor:
    """:func:`max_new_tokens` from the source lengths (B,) themselves (another engine's batch has no ``src``)."""
    return (ratio * lengths + extra).long().clamp(1, cap)


def length_cap(src: torch.Tensor, max_len: int, ratio: float = 2.0, extra: int = 10) -> int:
    """One limit for a whole batch (the longest sentence's): what a peer's ``generate`` is given."""
    return int(max_new_tokens(src, max_len, ratio, extra).max())


def constrain(logprobs: torch.Tensor, step: int, limits: torch.Tensor, min_len: int,
              history: torch.Tensor | None = None, no_repeat_ngram: int = 0) -> torch.Tensor:
    """Set to -inf what may not come next: EOS before ``min_len``, anything but EOS at a row's limit, and
    tokens that would repeat an n-gram of ``history`` (N, t) when ``no_repeat_ngram`` = n > 0. Returns a
    modified copy, or ``logprobs`` itself when nothing is forbidden this step."""
    at_limit = step + 1 >= limits  # (N,)
    banned_ngrams = bool(no_repeat_ngram) and history is not None and history.shape[1] >= no_repeat_ngram
    if step >= min_len and not banned_ngrams and not bool(at_limit.any()):
        return logprobs  # nothing to forbid this step (the common case): no copy
    logprobs = logprobs.clone()
    if step < min_len:
        logprobs[:, EOS] = NEG_INF
    if bool(at_limit.any()):
        eos = logprobs[:, EOS].clone()
        logprobs[at_limit] = NEG_INF
        logprobs[:, EOS] = eos
    if banned_ngrams:
        logprobs[banned_ngram_tokens(history, no_repeat_ngram)] = NEG_INF
    return logprobs


def banned_ngram_tokens(history: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, token) pairs that would complete an n-gram already in the row's history (N, t), vectorised."""
    grams = history.unfold(1, n, 1)  # (N, t-n+1, n)
    prefix = history[:, history.shape[1] - n + 1:]  # (N, n-1): the last n-1 tokens
    hits = (grams[:, :, :-1] == prefix[:, None, :]).all(-1)  # (N, t-n+1)
    rows, where = hits.nonzero(as_tuple=True)
    return rows, grams[rows, where, -1]


# -- greedy and sampling: one token per row per step ---------------------------------------------------------


@torch.no_grad()
def decode_rows(model, src: torch.Tensor, limits: torch.Tensor, pick: Callable[[torch.Tensor], torch.Tensor],
                *, min_len: int = 0, cache: bool = True) -> list[Hypothesis]:
    """Run ``pick`` (constrained log-probs (N, V) -> tokens (N,)) until every row said EOS or hit its limit."""
    N = src.shape[0]
    state = model.start(src, cache)
    out = torch.full((N, int(limits.max())), PAD, dtype=torch.long, device=src.device)  # generated ids
    logprob = torch.zeros(N, dtype=torch.float64, device=src.device)
    rows = torch.arange(N, device=src.device)  # original row of each live row
    tokens = torch.full((N,), BOS, dtype=torch.long, device=src.device)
    step = 0
    while rows.numel():
        logits, state = model.decode_step(tokens, state)
        lp = logits.float().log_softmax(-1)  # (n, V)
        nxt = pick(constrain(lp, step, limits[rows], min_len))  # (n,)
        out[rows, step] = nxt
        logprob[rows] += lp.gather(1, nxt[:, None])[:, 0].double()
        live = (nxt != EOS) & (step + 1 < limits[rows])
        step += 1
        if not bool(live.all()):
            keep = live.nonzero()[:, 0]
            rows, state = rows[keep], state.select(keep)
        tokens = nxt[live]
    return [Hypothesis(ids, lp, lp) for ids, lp in zip(trim(out), logprob.tolist())]


def trim(out: torch.Tensor) -> list[list[int]]:
    """Rows of generated ids cut after their EOS (kept) or at the first PAD."""
    result = []
    for row in out.tolist():
        end = row.index(EOS) + 1 if EOS in row else (row.index(PAD) if PAD in row else len(row))
        result.append(row[:end])
    return result


def greedy(model: Decoder, src: torch.Tensor, limits: torch.Tensor, *, min_len: int = 0, cache: bool = True
           ) -> list[Hypothesis]:
    """The most probable token at every step."""
    return decode_rows(model, src, limits, lambda lp: lp.max(-1).indices, min_len=min_len, cache=cache)


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits per row (ties with the k-th kept), -inf elsewhere; k <= 0 keeps all."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = logits.topk(k, dim=-1).values[..., -1:]  # (N, 1)
    return logits.masked_fill(logits < kth, NEG_INF)


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the nucleus: the fewest most-likely tokens whose probability reaches p (Holtzman et al. 2020)."""
    if p >= 1.0:
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(-1)
    outside = probs.cumsum(-1) - probs >= p  # mass before this token already reaches p (the top one stays)
    return logits.scatter(-1, order, sorted_logits.masked_fill(outside, NEG_INF))


def sample(model: Decoder, src: torch.Tensor, limits: torch.Tensor, *, top_k: int = 0, top_p: float = 1.0,
           temperature: float = 1.0, generator: torch.Generator | None = None, min_len: int = 0,
           cache: bool = True) -> list[Hypothesis]:
    """Ancestral sampling from the tempered, top-k- then top-p-filtered distribution."""

    def pick(lp: torch.Tensor) -> torch.Tensor:
        filtered = top_p_filter(top_k_filter(lp / temperature, top_k), top_p)
        return torch.multinomial(filtered.softmax(-1), 1, generator=generator)[:, 0]

    return decode_rows(model, src, limits, pick, min_len=min_len, cache=cache)


# -- beam search ---------------------------------------------------------------------------------------------


@torch.no_grad()
def beam_search(model: Decoder, src: torch.Tensor, limits: torch.Tensor, *, beam_size: int = 4,
                length_penalty: float = 1.0, nbest: int = 1, min_len: int = 0, no_repeat_ngram: int = 0,
                early_stopping: bool = True, cache: bool = True) -> list[list[Hypothesis]]:
    """Batched beam search over sentences x beams; returns the ``nbest`` best finished hypotheses per sentence.

    Each step extends every live beam, keeps the 2K best candidates per sentence, files those ending in EOS
    among the top K as finished (score = logprob / length**length_penalty, length counting EOS) and keeps the
    K best others as the new beams, whose cache rows are reordered with ``state.select``. A sentence is done
    when it has K finished hypotheses (``early_stopping``) or, otherwise, when no live beam's normalised score
    can beat its worst finished one (Hugging Face's default rule); done sentences leave the batch.
    """
    if nbest > beam_size:
        raise UserError(f"--nbest ({nbest}) cannot exceed --beam-size ({beam_size})")
    B, K, device = src.shape[0], beam_size, src.device
    state = model.start(src, cache).select(torch.arange(B, device=device).repeat_interleave(K))  # row b*K + k
    scores = torch.full((B, K), NEG_INF, device=device)
    scores[:, 0] = 0.0  # one live beam at the start: the others would duplicate it
    seqs = torch.empty((B * K, 0), dtype=torch.long, device=device)
    tokens = torch.full((B * K,), BOS, dtype=torch.long, device=device)
    sentences = torch.arange(B, device=device)  # original sentence of each live sentence
    finished: list[list[Hypothesis]] = [[] for _ in range(B)]
    count = torch.zeros(B, dtype=torch.long, device=device)  # finished hypotheses per live sentence (at most K)
    worst = torch.full((B,), NEG_INF, dtype=torch.float64, device=device)  # K-th best finished score, once K

    def normalise(logprob: torch.Tensor | float, length: int) -> torch.Tensor | float:
        return logprob / length ** length_penalty

    step = 0
    while sentences.numel():
        n = sentences.numel()
        logits, state = model.decode_step(tokens, state)
        lp = constrain(logits.float().log_softmax(-1), step, limits[sentences].repeat_interleave(K), min_len,
                       seqs, no_repeat_ngram)  # (n*K, V)
        # The 2K best extensions of a sentence are among its beams' own 2K best tokens: rank only those.
        row_top, row_tok = lp.topk(min(2 * K, lp.shape[-1]), dim=-1)  # (n*K, W)
        W = row_top.shape[-1]
        cand = scores.view(-1, 1) + row_top  # (n*K, W)
        top, idx = cand.view(n, K * W).topk(2 * K, dim=1)  # (n, 2K)
        beam, tok = idx // W, row_tok.view(n, K * W).gather(1, idx)
        is_eos = tok == EOS
        filed = is_eos & (torch.arange(2 * K, device=device) < K) & torch.isfinite(top)  # (n, 2K)
        if bool(filed.any()):
            for i in filed.any(1).nonzero()[:, 0].tolist():  # few sentences per step
                b = int(sentences[i])
                for j in filed[i].nonzero()[:, 0].tolist():
                    row, logprob = i * K + int(beam[i, j]), float(top[i, j])
                    finished[b].append(Hypothesis(seqs[row].tolist() + [EOS], logprob,
                                                  normalise(logprob, step + 1)))
                finished[b] = sorted(finished[b], key=lambda h: -h.score)[:K]
                count[i] = len(finished[b])
                if count[i] == K:
                    worst[i] = finished[b][-1].score
        keep_top, keep_pos = top.masked_fill(is_eos, NEG_INF).topk(K, dim=1)  # (n, K) the new beams
        rows = (torch.arange(n, device=device)[:, None] * K + beam.gather(1, keep_pos)).view(-1)
        scores, tokens = keep_top, tok.gather(1, keep_pos).view(-1)
        seqs = torch.cat([seqs.index_select(0, rows), tokens[:, None]], dim=1)
        state = state.select(rows, same_source=True)
        step += 1
        best_live = scores[:, 0]
        enough = (count == K) & (early_stopping or (normalise(best_live.double(), step) <= worst))
        done = (best_live == NEG_INF) | enough  # (n,)
        if bool(done.any()):
            keep = (~done).nonzero()[:, 0]
            sentences, scores, count, worst = sentences[keep], scores[keep], count[keep], worst[keep]
            rows = (keep[:, None] * K + torch.arange(K, device=device)).view(-1)
            state, seqs, tokens = state.select(rows), seqs[rows], tokens[rows]
    return [hyps[:nbest] for hyps in finished]


# -- the strategy as a user chooses it -----------------------------------------------------------------------


@dataclass
class Strategy:
    """A decoding strategy and its parameters, as the ``--strategy`` flags of eval.py / translate.py set them."""

    strategy: str = "greedy"  # greedy | beam | sample
    beam_size: int = 4
    length_penalty: float = 1.0
    nbest: int = 1
    no_repeat_ngram: int = 0
    early_stopping: bool = True
    top_k: int = 0  # 0 = no top-k filter
    top_p: float = 1.0  # 1.0 = no nucleus filter
    temperature: float = 1.0
    seed: int = 0
    max_len_ratio: float = 2.0  # limit = ratio x source length + extra
    max_len_extra: int = 10

    def __post_init__(self) -> None:
        checks = [(self.strategy in STRATEGIES, f"--strategy must be one of {', '.join(STRATEGIES)}, got "
                                                f"'{self.strategy}'"),
                  (self.beam_size >= 1, f"--beam-size must be at least 1, got {self.beam_size}"),
                  (self.nbest == 1 or self.strategy == "beam",
                   f"--nbest {self.nbest} needs --strategy beam (greedy and sampling give one hypothesis)"),
                  (1 <= self.nbest <= self.beam_size,
                   f"--nbest must be between 1 and --beam-size ({self.beam_size}), got {self.nbest}"),
                  (self.no_repeat_ngram >= 0, f"--no-repeat-ngram must be >= 0, got {self.no_repeat_ngram}"),
                  (self.top_k >= 0, f"--top-k must be >= 0, got {self.top_k}"),
                  (0.0 < self.top_p <= 1.0, f"--top-p must be in (0, 1], got {self.top_p}"),
                  (self.temperature > 0.0, f"--temperature must be positive, got {self.temperature}"),
                  (self.max_len_ratio > 0 and self.max_len_extra >= 0,
                   f"--max-len-ratio must be positive and --max-len-extra >= 0, got {self.max_len_ratio} and "
                   f"{self.max_len_extra}")]
        for ok, message in checks:
            if not ok:
                raise UserError(message)

    def generator(self, device: torch.device) -> torch.Generator:
        return torch.Generator(device=device).manual_seed(self.seed)

    def run(self, model: Decoder, src: torch.Tensor, max_len: int, generator: torch.Generator | None = None
            ) -> list[list[Hypothesis]]:
        """Hypotheses per sentence of src (B, L): the n-best for beam search, one otherwise."""
        limits = max_new_tokens(src, max_len, self.max_len_ratio, self.max_len_extra)
        if self.strategy == "beam":
            return beam_search(model, src, limits, beam_size=self.beam_size, length_penalty=self.length_penalty,
                               nbest=self.nbest, no_repeat_ngram=self.no_repeat_ngram,
                               early_stopping=self.early_stopping)
        if self.strategy == "sample":
            hyps = sample(model, src, limits, top_k=self.top_k, top_p=self.top_p, temperature=self.temperature,
                          generator=generator or self.generator(src.device))
        else:
            hyps = greedy(model, src, limits)
        return [[h] for h in hyps]


def add_strategy_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("decoding strategy")
    g.add_argument("--strategy", default="greedy", choices=STRATEGIES, help="how to pick each next token")
    g.add_argument("--beam-size", type=int, default=4, help="beams kept (--strategy beam)")
    g.add_argument("--length-penalty", type=float, default=1.0, help="beam score = logprob / length**this")
    g.add_argument("--nbest", type=int, default=1, help="hypotheses per sentence (beam search)")
    g.add_argument("--no-repeat-ngram", type=int, default=0, help="forbid repeating n-grams of this size (0: off)")
    g.add_argument("--no-early-stopping", dest="early_stopping", action="store_false",
                   help="keep searching until no live beam can beat the finished ones")
    g.add_argument("--top-k", type=int, default=0, help="sample among the k most likely tokens (0: all)")
    g.add_argument("--top-p", type=float, default=1.0, help="sample from the nucleus of this mass (1: all)")
    g.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (below 1: sharper)")
    g.add_argument("--seed", type=int, default=0, help="makes sampling reproducible")
    g.add_argument("--max-len-ratio", type=float, default=2.0, help="length limit = ratio x source + extra")
    g.add_argument("--max-len-extra", type=int, default=10, help="tokens added to the length limit")


def strategy_from_args(args: argparse.Namespace) -> Strategy:
    return Strategy(**{f.name: getattr(args, f.name) for f in fields(Strategy)})
