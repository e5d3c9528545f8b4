"""The evidence helpers against known values: sacrebleu's own paired bootstrap, a CI that covers a known
difference, McNemar by hand, the verdict rule, and an interleaved timer that finds identical work a tie."""

import time

import numpy as np
import pytest
import torch
from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.significance import PairedTest

from shared_utils.stats import bootstrap_corpus, bootstrap_items, comparison, interval, mcnemar_p, verdict
from shared_utils.timing import interleaved, ratio

REFS = ["the cat sat on the mat", "a dog barked at the moon", "it is raining again today", "we went home early",
        "the market fell sharply", "she reads a long book", "birds sing in the morning", "the train was late"]
A = ["the cat sat on a mat", "a dog barked at moon", "it rains again today", "we went home early",
     "the market fell", "she reads a book", "birds sing at morning", "the train is late"]
B = ["cat on mat", "the dog barks", "raining today", "we go home", "market falls", "she reads", "birds sing",
     "train late"]


@pytest.mark.parametrize("metric", [BLEU(), CHRF(word_order=2)])
def test_corpus_bootstrap_reproduces_sacrebleus_paired_bootstrap(metric, monkeypatch):
    monkeypatch.setenv("SACREBLEU_SEED", "12345")
    test = PairedTest([("baseline", B), ("system", A)], {"m": metric}, references=[REFS], test_type="bs",
                      n_samples=1000)
    _, results = test()
    _, system = next(v for k, v in results.items() if k != "System")  # keyed by the metric's own name
    scores_a, scores_b = bootstrap_corpus(metric, [A], [B], REFS, resamples=1000, seed=12345)
    assert scores_a.mean() == pytest.approx(system.mean, abs=1e-4)  # the same resamples (float32 sums)
    assert system.p_value < 0.01 and (scores_a - scores_b).min() > 0  # A beats B on every resample


def test_corpus_bootstrap_averages_seeds():
    one_a, one_b = bootstrap_corpus(BLEU(), [A], [B], REFS, resamples=50)
    two_a, two_b = bootstrap_corpus(BLEU(), [A, B], [B, B], REFS, resamples=50)
    assert np.allclose(two_a, (one_a + one_b) / 2) and np.allclose(two_b, one_b)


def test_item_bootstrap_ci_covers_a_known_difference():
    rng = np.random.default_rng(0)
    b = rng.normal(0.0, 1.0, size=(3, 2000))
    a = b + 0.5 + rng.normal(0.0, 0.2, size=(3, 2000))  # A is better by 0.5 on every item, plus noise
    samples = bootstrap_items(a, b)
    lo, hi = interval(samples)
    assert lo < 0.5 < hi and lo > 0.45 and hi < 0.55
    assert len(samples) == 1000
    same = interval(bootstrap_items(b, b))
    assert same == [0.0, 0.0]


def test_mcnemar_matches_the_exact_binomial_by_hand():
    a = [True] * 10 + [False] * 2 + [True] * 30  # 10 rows only A gets right, 2 only B, 30 both
    b = [False] * 10 + [True] * 2 + [True] * 30
    assert mcnemar_p(a, b) == pytest.approx(2 * (1 + 12 + 66) / 2**12)
    assert mcnemar_p(a, a) == 1.0


@pytest.mark.parametrize(("diff", "ci", "stds", "expected"), [
    (0.9, [0.3, 1.5], [0.2, 0.4], "win"),
    (-0.9, [-1.5, -0.3], [0.2, 0.4], "loss"),
    (0.9, [-0.1, 1.9], [0.2, 0.4], "tie"),  # the interval includes 0
    (0.3, [0.1, 0.5], [0.2, 0.4], "tie"),  # smaller than a seed std
])
def test_verdict_rule(diff, ci, stds, expected):
    assert verdict(diff, ci, stds) == expected


def test_comparison_entry_holds_the_evidence():
    entry = comparison("moe", [31.0, 31.5, 30.5], "dense", [30.0, 30.2, 29.8], np.linspace(0.5, 1.5, 1000),
                       seeds=[0, 1, 2])
    assert entry["mean"] == {"moe": 31.0, "dense": 30.0, "diff": 1.0}
    assert entry["std"]["moe"] == pytest.approx(0.5) and entry["std"]["dense"] == pytest.approx(0.2)
    assert entry["ci95"] == pytest.approx([0.525, 1.475]) and entry["verdict"] == "win"
    assert set(entry) == {"seeds", "per_seed", "mean", "std", "ci95", "verdict"}


def test_interleaved_timer_finds_identical_work_a_tie_and_four_times_the_work_slower():
    timings = interleaved({"a": lambda: time.sleep(0.002), "b": lambda: time.sleep(0.002),
                           "slow": lambda: time.sleep(0.008)}, repeats=5, min_run_time=0.02)
    same = ratio(timings["a"], timings["b"])
    assert 0.85 < same["median"] < 1.15 and same["repeats"] == 5
    slow = ratio(timings["slow"], timings["a"])
    assert slow["verdict"] == "higher" and 3.0 < slow["median"] < 4.5
    record = timings["a"].as_dict()
    assert set(record) == {"median_ms", "iqr_ms", "repeats", "samples_ms"} and record["repeats"] == 5
    assert 2.0 <= record["median_ms"] < 3.0 and record["iqr_ms"][0] <= record["median_ms"] <= record["iqr_ms"][1]


def test_time_by_op_family_puts_each_operator_in_its_family():
    from shared_utils.timing import time_by_op_family

    a, b = torch.randn(256, 256), torch.randn(256, 256)
    split = time_by_op_family(lambda: (a @ b).log_softmax(-1).topk(3), runs=2)
    assert set(split) == {"total_ms", "matmul", "attention", "softmax and search", "copies and indexing", "other",
                          "outside operators"}
    assert split["matmul"]["ms"] > 0 and split["softmax and search"]["ms"] > 0 and split["attention"]["ms"] == 0
    assert sum(v["share"] for k, v in split.items() if k != "total_ms") == pytest.approx(1.0)
    assert sum(v["ms"] for k, v in split.items() if k != "total_ms") == pytest.approx(split["total_ms"])
