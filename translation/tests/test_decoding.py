import functools
import math
from dataclasses import dataclass

import pytest
import torch

from shared_utils.errors import UserError
from translation.config import ModelConfig
from translation.decoding import (
    Strategy,
    banned_ngram_tokens,
    beam_search,
    greedy,
    max_new_tokens,
    sample,
    top_k_filter,
    top_p_filter,
)
from translation.model import BOS, EOS, PAD, build_model

SCHEMES = ["sinusoidal", "rope", "relative_bias", "marian"]  # marian: the Hugging Face peer behind our interface


def copy_task(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sources of 2-8 random ids; the target repeats the source and says EOS."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, 9, (n,), generator=g)
    src = torch.randint(4, 50, (n, 8), generator=g).masked_fill(torch.arange(8) >= lengths[:, None], PAD)
    tgt = torch.cat([torch.full((n, 1), BOS), src, torch.zeros(n, 1, dtype=torch.long)], dim=1)
    tgt[torch.arange(n), lengths + 1] = EOS
    return torch.cat([src, torch.zeros(n, 1, dtype=torch.long)], 1), tgt


@functools.cache
def tiny(scheme: str) -> torch.nn.Module:
    """A tiny model half-trained on the copy task (2 s): its hypotheses end with EOS at varied lengths."""
    torch.manual_seed(0)
    arch = dict(arch="marian") if scheme == "marian" else dict(positional=scheme)
    cfg = ModelConfig(vocab_size=50, d_model=32, num_heads=4, encoder_layers=2, decoder_layers=2, d_ff=64,
                      dropout=0.0, max_len=40, **arch)
    model = build_model(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(80):
        src, tgt = copy_task(32, step)
        logits = model(src, tgt[:, :-1])
        torch.nn.functional.cross_entropy(logits.flatten(0, 1), tgt[:, 1:].flatten(), ignore_index=PAD).backward()
        opt.step()
        opt.zero_grad()
    return model.eval()


def source() -> torch.Tensor:
    return copy_task(5, 1000)[0]


def teacher_forced_logprob(model, src_row: torch.Tensor, tokens: list[int]) -> float:
    src = src_row[None, : int((src_row != PAD).sum())]
    tgt_in = torch.tensor([[BOS] + tokens[:-1]])
    with torch.no_grad():
        lp = model(src, tgt_in).log_softmax(-1)[0]  # (S, V)
    return float(lp.gather(1, torch.tensor(tokens)[:, None]).sum())


@pytest.mark.parametrize("positional", SCHEMES)
def test_cached_equals_uncached_for_greedy_and_beam(positional):
    model, src = tiny(positional), source()
    limits = torch.full((5,), 12)
    for run in (lambda cache: [[h] for h in greedy(model, src, limits, cache=cache)],
                lambda cache: beam_search(model, src, limits, beam_size=3, nbest=3, cache=cache)):
        cached, uncached = run(True), run(False)
        assert [[h.tokens for h in n] for n in cached] == [[h.tokens for h in n] for n in uncached]
        for a, b in zip(sum(cached, []), sum(uncached, [])):
            assert a.score == pytest.approx(b.score, abs=1e-4)
    assert {len(h[0].tokens) for h in cached} != {12}  # some hypotheses ended with EOS before the limit


@pytest.mark.parametrize("positional", SCHEMES)
def test_beam_of_one_is_greedy(positional):
    model, src = tiny(positional), source()
    limits = max_new_tokens(src, 40)
    assert [h.tokens for h in greedy(model, src, limits)] == \
        [n[0].tokens for n in beam_search(model, src, limits, beam_size=1)]


@pytest.mark.parametrize("length_penalty", [0.0, 1.0])
def test_beam_scores_are_the_models_logprobs_with_the_same_length_penalty(length_penalty):
    model, src = tiny("rope"), source()
    nbest = beam_search(model, src, torch.full((5,), 10), beam_size=4, nbest=4, length_penalty=length_penalty)
    for row, hyps in zip(src, nbest):
        assert len(hyps) == 4 and [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
        for h in hyps:
            assert h.tokens[-1] == EOS and EOS not in h.tokens[:-1]  # EOS ends a hypothesis
            logprob = teacher_forced_logprob(model, row, h.tokens)
            assert h.logprob == pytest.approx(logprob, abs=1e-4)
            assert h.score == pytest.approx(logprob / len(h.tokens) ** length_penalty, abs=1e-4)


A, B = 3, 4


@dataclass
class ToyState:
    tokens: torch.Tensor  # (N, t)

    def select(self, index: torch.Tensor, same_source: bool = False) -> "ToyState":
        return ToyState(self.tokens.index_select(0, index))


class ToyDecoder:
    """Next-token probabilities set by hand for each prefix; any other prefix ends (EOS 0.98)."""

    TABLE = {(): {A: 0.6, B: 0.4},
             (A,): {A: 0.3, B: 0.3, EOS: 0.4},
             (B,): {EOS: 0.9, A: 0.05, B: 0.05}}

    def start(self, src, cache=True):
        return ToyState(src.new_empty((src.shape[0], 0)))

    def decode_step(self, tokens, state):
        prefix = torch.cat([state.tokens, tokens[:, None]], dim=1)
        logits = torch.full((len(tokens), 6), float("-inf"))  # probability 0 off the table
        for i, row in enumerate(prefix.tolist()):
            probs = self.TABLE.get(tuple(row[1:]), {EOS: 0.98, A: 0.01, B: 0.01})
            for tok, p in probs.items():
                logits[i, tok] = math.log(p)
        return logits, ToyState(prefix)


def test_beam_search_finds_the_beams_worked_out_by_hand():
    # Greedy takes A (0.6) then EOS (0.4): p = 0.24. Beam 2 keeps A and B; at step 2 the candidates are
    # B EOS .36, A EOS .24, A A .18, A B .18: both EOS ones are in the top 2, so the search ends with them.
    from translation.decoding import Decoder

    src = torch.ones((1, 3), dtype=torch.long)
    limits = torch.tensor([5])
    assert isinstance(ToyDecoder(), Decoder) and isinstance(tiny("rope"), Decoder)  # both satisfy the contract
    assert greedy(ToyDecoder(), src, limits)[0].tokens == [A, EOS]
    hyps = beam_search(ToyDecoder(), src, limits, beam_size=2, nbest=2, length_penalty=0.0)[0]
    assert [h.tokens for h in hyps] == [[B, EOS], [A, EOS]]
    assert [h.logprob for h in hyps] == pytest.approx([math.log(0.36), math.log(0.24)], abs=1e-6)


def test_no_repeat_ngram_min_and_max_length():
    history = torch.tensor([[5, 6, 7, 5, 6], [1, 2, 3, 4, 5]])
    rows, toks = banned_ngram_tokens(history, 3)
    assert list(zip(rows.tolist(), toks.tolist())) == [(0, 7)]  # "5 6" was followed by 7 before
    model, src = tiny("sinusoidal"), source()
    for hyps in beam_search(model, src, torch.full((5,), 15), beam_size=3, nbest=3, no_repeat_ngram=2):
        for h in hyps:
            grams = list(zip(h.tokens, h.tokens[1:]))
            assert len(grams) == len(set(grams))
    limits = torch.tensor([3, 4, 5, 6, 7])
    for h, limit in zip(greedy(model, src, limits), limits.tolist()):
        assert len(h.tokens) <= limit
    assert all(len(h.tokens) == 7 for h in greedy(model, src, torch.full((5,), 7), min_len=6))


def test_top_k_and_top_p_never_leave_their_sets():
    torch.manual_seed(0)
    logits = torch.randn(4, 30)
    topk = set(logits[0].topk(5).indices.tolist())
    probs = logits[0].softmax(-1)
    order = probs.argsort(descending=True)
    nucleus_size = int((probs[order].cumsum(0) < 0.9).sum()) + 1
    nucleus = set(order[:nucleus_size].tolist())
    assert set(top_k_filter(logits, 5)[0].isfinite().nonzero()[:, 0].tolist()) == topk
    assert set(top_p_filter(logits, 0.9)[0].isfinite().nonzero()[:, 0].tolist()) == nucleus
    g = torch.Generator().manual_seed(0)
    draws_k = torch.multinomial(top_k_filter(logits, 5).softmax(-1)[0], 2000, replacement=True, generator=g)
    draws_p = torch.multinomial(top_p_filter(logits, 0.9).softmax(-1)[0], 2000, replacement=True, generator=g)
    assert set(draws_k.tolist()) <= topk and set(draws_p.tolist()) <= nucleus


def test_sampling_is_reproducible_with_a_seed_and_respects_top_k():
    model, src = tiny("relative_bias"), source()
    limits = torch.full((5,), 10)

    def draw(seed, **kw):
        return [h.tokens for h in sample(model, src, limits, generator=torch.Generator().manual_seed(seed), **kw)]

    assert draw(3, top_k=10) == draw(3, top_k=10)
    assert draw(3, top_k=10) != draw(4, top_k=10)
    first = draw(7, top_k=1)  # k = 1 is greedy
    assert first == [h.tokens for h in greedy(model, src, limits)]
    hyps = sample(model, src, limits, top_k=10, temperature=0.7, generator=torch.Generator().manual_seed(0))
    for row, h in zip(src, hyps):  # the model's own log-probability, not the tempered one
        assert h.logprob == pytest.approx(teacher_forced_logprob(model, row, h.tokens), abs=1e-4)


def test_strategy_flags_are_validated():
    with pytest.raises(UserError, match="--top-p"):
        Strategy(strategy="sample", top_p=1.5)
    with pytest.raises(UserError, match="--nbest"):
        Strategy(strategy="beam", beam_size=2, nbest=3)
    with pytest.raises(UserError, match="--strategy"):
        Strategy(strategy="viterbi")
