"""The evidence behind every headline comparison: paired bootstrap confidence intervals over the evaluation
items, McNemar's test for two classifiers, and the verdict rule.

A comparison of systems A and B, each trained with several seeds, is summarised as

    {"seeds": [0, 1, 2], "per_seed": {"A": [...], "B": [...]}, "mean": {"A": .., "B": .., "diff": ..},
     "std": {"A": .., "B": ..}, "ci95": [lo, hi], "verdict": "win" | "tie" | "loss"}

where ``ci95`` is the 95% interval of the seed-averaged difference A - B under a paired bootstrap over the
items (the same resampled items for both systems, 1,000 resamples). The verdict is ``win`` or ``loss`` only
when that interval excludes 0 *and* the mean difference exceeds the larger seed standard deviation of the two
systems; otherwise ``tie``. Corpus metrics (BLEU, chrF++) are recomputed from sacrebleu's own sufficient
statistics on each resample, exactly as ``sacrebleu --paired-bs`` does; per-item metrics (ROUGE, BERTScore,
accuracy) are averaged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .errors import UserError

RESAMPLES = 1000
SEED = 12345  # sacrebleu's default bootstrap seed (SACREBLEU_SEED)


def _indices(n: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, n) item indices drawn with replacement, as sacrebleu draws them."""
    if n == 0:
        raise UserError("a bootstrap needs at least one evaluation item")
    return np.random.default_rng(seed).choice(n, size=(resamples, n), replace=True)


def interval(samples: np.ndarray) -> list[float]:
    """The central 95% of bootstrap samples (2.5th and 97.5th percentiles)."""
    return [float(np.percentile(samples, 2.5)), float(np.percentile(samples, 97.5))]


def bootstrap_items(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]], *, resamples: int = RESAMPLES,
                    seed: int = SEED) -> np.ndarray:
    """Bootstrap samples of mean(A) - mean(B) for per-item scores: ``a`` is (seeds_a, items), ``b`` is
    (seeds_b, items), the items in the same order. Each resample draws one set of items for both systems;
    a system's value is the mean over its seeds and the drawn items."""
    a_arr, b_arr = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a_arr.ndim != 2 or b_arr.ndim != 2 or a_arr.shape[1] != b_arr.shape[1]:
        raise UserError(f"paired scores need the same items: shapes {a_arr.shape} and {b_arr.shape}")
    idx = _indices(a_arr.shape[1], resamples, seed)  # (R, N)
    per_item = a_arr.mean(0) - b_arr.mean(0)  # (N,): the mean over seeds commutes with the mean over items
    return per_item[idx].mean(1)


def corpus_statistics(metric, hyps: Sequence[str], refs: Sequence[str]) -> np.ndarray:
    """sacrebleu's per-sentence sufficient statistics (items, stats) for a corpus metric (BLEU, CHRF)."""
    return np.asarray(metric._extract_corpus_statistics(list(hyps), [list(refs)]), dtype=np.float32)


def bootstrap_corpus(metric, a: Sequence[Sequence[str]], b: Sequence[Sequence[str]], refs: Sequence[str], *,
                     resamples: int = RESAMPLES, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap samples of a corpus metric for systems A and B, each the mean over its seeds' hypotheses
    (``a``: seeds_a lists of hypotheses). Returns (scores_a, scores_b), each (resamples,).

    On each resample the metric is recomputed from the summed sufficient statistics of the drawn sentences,
    as sacrebleu's paired bootstrap does; with one seed per system and the same seed the samples are
    sacrebleu's own (a test checks it)."""
    idx = _indices(len(refs), resamples, seed)

    def samples(system: Sequence[Sequence[str]]) -> np.ndarray:
        runs = []
        for hyps in system:
            stats = corpus_statistics(metric, hyps, refs)
            runs.append([metric._compute_score_from_stats(s.sum(0)).score for s in stats[idx]])
        return np.mean(runs, axis=0)

    return samples(a), samples(b)


def mcnemar_p(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> float:
    """Exact (binomial) McNemar test of two classifiers on the same rows: the two-sided p-value that the
    rows only A gets right and the rows only B gets right are equally likely."""
    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    n, k = only_a + only_b, min(only_a, only_b)
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def verdict(diff: float, ci95: Sequence[float], stds: Sequence[float]) -> str:
    """``win`` / ``loss`` when the interval excludes 0 and |diff| exceeds the larger seed std, else ``tie``."""
    clear = ci95[0] > 0 or ci95[1] < 0
    if clear and abs(diff) > max(stds, default=0.0):
        return "win" if diff > 0 else "loss"
    return "tie"


def comparison(name_a: str, per_seed_a: Sequence[float], name_b: str, per_seed_b: Sequence[float],
               samples: np.ndarray, seeds: Sequence[int] | dict[str, Sequence[int]]) -> dict:
    """One results entry: every seed's score, means, stds (0 for one seed), the bootstrap CI of A - B, and
    the verdict. ``samples`` are bootstrap samples of the seed-averaged A - B."""
    std_a = float(np.std(per_seed_a, ddof=1)) if len(per_seed_a) > 1 else 0.0
    std_b = float(np.std(per_seed_b, ddof=1)) if len(per_seed_b) > 1 else 0.0
    diff = float(np.mean(per_seed_a) - np.mean(per_seed_b))
    ci = interval(samples)
    return {
        "seeds": seeds,
        "per_seed": {name_a: [float(x) for x in per_seed_a], name_b: [float(x) for x in per_seed_b]},
        "mean": {name_a: float(np.mean(per_seed_a)), name_b: float(np.mean(per_seed_b)), "diff": diff},
        "std": {name_a: std_a, name_b: std_b},
        "ci95": ci,
        "verdict": verdict(diff, ci, (std_a, std_b)),
    }
