"""The evidence behind every headline comparison: a two-level paired bootstrap (seeds, then evaluation items),
a seed-level test, McNemar's test for two classifiers, and the verdict rule.

A comparison of systems A and B, each trained with one or more seeds, is summarised as

    {"seeds": .., "per_seed": {"A": [...], "B": [...]}, "mean": {"A": .., "B": .., "diff": ..},
     "std": {"A": .., "B": ..}, "ci95": [lo, hi], "seed_test": "welch", "seed_p": .., "verdict": "win"}

Two kinds of noise separate two measured systems: which evaluation items were drawn, and which seeds the
systems were trained with. Both are in the evidence:

- ``ci95`` is the 95% interval of the seed-averaged difference A - B under a **two-level paired bootstrap**:
  each resample draws each system's seeds with replacement (within the system), then one set of items shared
  by both systems, and takes the difference of the two means. Corpus metrics (BLEU, chrF++) are recomputed
  from sacrebleu's sufficient statistics on every resample, as ``sacrebleu --paired-bs`` does (with one seed
  a side the samples are sacrebleu's own); per-item metrics (ROUGE, BERTScore, accuracy) are averaged.
- A bootstrap over 2-3 seeds cannot see their spread well: 3 seeds give 10 distinct resamples, and its
  variance is (n-1)/n of the unbiased one, so on its own it calls seed noise a difference far more often than
  5% (``tests/test_evidence.py`` measures it). The seed-level evidence is therefore also a **t-test on the
  per-seed scores** (``seed_test``, ``seed_p``):
  Welch's test when both systems have >= 2 seeds; with one seed on one side, the single run against the
  other side's seeds (a prediction test: the other side's seed spread is assumed for both). Where B has no
  seed variance of its own (``b_fixed``: a deterministic baseline such as lead-1, or the very model A is a
  variant of, as with a decoding strategy or a quantized copy), a one-sample test of A's seeds against B's
  value, or none when A has one seed too: nothing then separates them but the items.

The verdict is ``win`` (``loss``) only when the interval lies wholly above (below) 0 on the side of the mean
difference *and* the seed-level test, where there is one, gives p < 0.05; otherwise ``tie``. Two independently
trained systems with **one seed each** can claim no more than a tie: nothing measures how far another seed
would move either of them (``seed_test`` says so). A calibration test on synthetic data with no true
difference and seed noise like ours checks that at most ~5% of comparisons come out ``win`` or ``loss``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .errors import UserError

RESAMPLES = 1000
SEED = 12345  # sacrebleu's default bootstrap seed (SACREBLEU_SEED)
ALPHA = 0.05  # the seed-level test's level, two-sided

# ``seed_test`` values: which seed-level test stands behind the verdict
WELCH = "welch"
PREDICTION = "prediction"  # one run against the other side's seeds
ONE_SAMPLE = "one-sample"  # B fixed: A's seeds against B's value
NOT_NEEDED = "none needed: B is fixed, A has one seed"
ONE_SEED_EACH = "none possible: one seed each, at most a tie"


def _indices(n: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, n) item indices drawn with replacement, as sacrebleu draws them."""
    if n == 0:
        raise UserError("a bootstrap needs at least one evaluation item")
    return np.random.default_rng(seed).choice(n, size=(resamples, n), replace=True)


def _seed_weights(seeds: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(resamples, seeds): how often each seed is drawn when ``seeds`` seeds are drawn with replacement,
    divided by ``seeds``, so that ``per_seed_values @ weights.T`` is the resampled seed mean."""
    draws = rng.integers(0, seeds, size=(resamples, seeds))
    return np.stack([np.bincount(row, minlength=seeds) for row in draws]) / seeds


def _two_level(a_runs: np.ndarray, b_runs: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seed-resampled means of per-seed bootstrap values: ``*_runs`` are (seeds, resamples), each seed's value
    on the same item draws. The seed draws use their own stream, so the item draws stay sacrebleu's."""
    rng = np.random.default_rng([seed, 1])
    resamples = a_runs.shape[1]
    wa, wb = _seed_weights(len(a_runs), resamples, rng), _seed_weights(len(b_runs), resamples, rng)
    return (wa * a_runs.T).sum(1), (wb * b_runs.T).sum(1)


def interval(samples: np.ndarray) -> list[float]:
    """The central 95% of bootstrap samples (2.5th and 97.5th percentiles)."""
    return [float(np.percentile(samples, 2.5)), float(np.percentile(samples, 97.5))]


def bootstrap_items(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]], *, resamples: int = RESAMPLES,
                    seed: int = SEED) -> np.ndarray:
    """Two-level bootstrap samples of mean(A) - mean(B) for per-item scores: ``a`` is (seeds_a, items), ``b``
    is (seeds_b, items), the items in the same order. Each resample draws each system's seeds, then one set
    of items for both systems."""
    a_arr, b_arr = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a_arr.ndim != 2 or b_arr.ndim != 2 or a_arr.shape[1] != b_arr.shape[1]:
        raise UserError(f"paired scores need the same items: shapes {a_arr.shape} and {b_arr.shape}")
    idx = _indices(a_arr.shape[1], resamples, seed)  # (R, N)
    a_runs, b_runs = a_arr[:, idx].mean(-1), b_arr[:, idx].mean(-1)  # (seeds, R): each seed on each draw
    sa, sb = _two_level(a_runs, b_runs, seed)
    return sa - sb


def corpus_statistics(metric, hyps: Sequence[str], refs: Sequence[str]) -> np.ndarray:
    """sacrebleu's per-sentence sufficient statistics (items, stats) for a corpus metric (BLEU, CHRF)."""
    return np.asarray(metric._extract_corpus_statistics(list(hyps), [list(refs)]), dtype=np.float32)


def bootstrap_corpus(metric, a: Sequence[Sequence[str]], b: Sequence[Sequence[str]], refs: Sequence[str], *,
                     resamples: int = RESAMPLES, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """Two-level bootstrap samples of a corpus metric for systems A and B (``a``: seeds_a lists of
    hypotheses): each resample draws each system's seeds, then one set of sentences for both. Returns
    (scores_a, scores_b), each (resamples,): the mean over the drawn seeds of the metric on the drawn sentences.

    On each resample the metric is recomputed from the summed sufficient statistics of the drawn sentences,
    as sacrebleu's paired bootstrap does; with one seed per system the samples are sacrebleu's own (a test
    checks it)."""
    idx = _indices(len(refs), resamples, seed)

    def runs(system: Sequence[Sequence[str]]) -> np.ndarray:  # (seeds, R)
        return np.asarray([[metric._compute_score_from_stats(s.sum(0)).score
                            for s in corpus_statistics(metric, hyps, refs)[idx]] for hyps in system])

    return _two_level(runs(a), runs(b), seed)


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


def _t_p(t: float, df: float) -> float:
    """Two-sided p-value of Student's t; a zero spread gives p 0 for a nonzero gap and 1 for none."""
    from scipy.stats import t as student

    if math.isnan(t):
        return 1.0
    return float(2 * student.sf(abs(t), df))


def seed_test(per_seed_a: Sequence[float], per_seed_b: Sequence[float], *,
              b_fixed: bool = False) -> tuple[str, float | None]:
    """The seed-level test of A - B on per-seed scores: (``seed_test`` name, two-sided p-value or None).
    See the module's docstring for which test applies when."""
    a, b = np.asarray(per_seed_a, float), np.asarray(per_seed_b, float)
    diff = float(a.mean() - b.mean())
    if len(a) >= 2 and len(b) >= 2 and not b_fixed:
        va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
        if va + vb == 0:
            return WELCH, 0.0 if diff else 1.0
        df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
        return WELCH, _t_p(diff / math.sqrt(va + vb), df)
    many, one = (a, b) if len(a) >= 2 else (b, a)
    if len(many) < 2:
        return (NOT_NEEDED, None) if b_fixed else (ONE_SEED_EACH, None)
    s = float(many.std(ddof=1))
    if b_fixed:  # B is one fixed value (its mean where it has seeds too): A's seeds against it
        kind, scale = ONE_SAMPLE, s / math.sqrt(len(many))
    else:  # one run against the other side's seeds: Var(x - mean) = s^2 (1 + 1/n)
        kind, scale = PREDICTION, s * math.sqrt(1 + 1 / len(many))
    if scale == 0:
        return kind, 0.0 if diff else 1.0
    return kind, _t_p(diff / scale, len(many) - 1)


def verdict(diff: float, ci95: Sequence[float], seed_test_name: str = NOT_NEEDED,
            seed_p: float | None = None) -> str:
    """``win`` / ``loss`` when the interval lies wholly above / below 0 on the side of ``diff`` and the
    seed-level test (where there is one) gives p < :data:`ALPHA`; ``tie`` otherwise, and always for
    independent runs with one seed each."""
    if seed_test_name == ONE_SEED_EACH:
        return "tie"
    if seed_p is not None and not seed_p < ALPHA:
        return "tie"
    if diff > 0 and ci95[0] > 0:
        return "win"
    if diff < 0 and ci95[1] < 0:
        return "loss"
    return "tie"


def comparison(name_a: str, per_seed_a: Sequence[float], name_b: str, per_seed_b: Sequence[float],
               samples: np.ndarray, seeds: Sequence[int] | dict[str, Sequence[int]], *,
               b_fixed: bool = False) -> dict:
    """One results entry: every seed's score, means, stds (0 for one seed), the two-level bootstrap CI of
    A - B, the seed-level test and the verdict. ``samples`` are two-level bootstrap samples of the
    seed-averaged A - B; ``b_fixed``: B has no seed variance of its own (see the module's docstring)."""
    std_a = float(np.std(per_seed_a, ddof=1)) if len(per_seed_a) > 1 else 0.0
    std_b = float(np.std(per_seed_b, ddof=1)) if len(per_seed_b) > 1 else 0.0
    diff = float(np.mean(per_seed_a) - np.mean(per_seed_b))
    ci = interval(samples)
    test, p = seed_test(per_seed_a, per_seed_b, b_fixed=b_fixed)
    return {
        "seeds": seeds,
        "per_seed": {name_a: [float(x) for x in per_seed_a], name_b: [float(x) for x in per_seed_b]},
        "mean": {name_a: float(np.mean(per_seed_a)), name_b: float(np.mean(per_seed_b)), "diff": diff},
        "std": {name_a: std_a, name_b: std_b},
        "ci95": ci,
        "seed_test": test,
        "seed_p": p,
        "verdict": verdict(diff, ci, test, p),
    }
