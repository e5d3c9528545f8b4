"""The evidence helpers against known values: sacrebleu's own paired bootstrap, a CI that covers a known
difference, the seed level of the two-level bootstrap, the seed tests against scipy, McNemar by hand, the
verdict rule in every sign case, its calibration on synthetic seed noise, the timing interval, and an
interleaved timer that finds identical work a tie."""

import time

import numpy as np
import pytest
import torch
from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.significance import PairedTest

from shared_utils import stats
from shared_utils.stats import bootstrap_corpus, bootstrap_items, comparison, interval, mcnemar_p, seed_test, verdict
from shared_utils.timing import Timing, interleaved, median_interval, ratio, time_once

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


def test_corpus_bootstrap_resamples_seeds_within_each_system():
    one_a, one_b = bootstrap_corpus(BLEU(), [A], [B], REFS, resamples=200)
    two_a, two_b = bootstrap_corpus(BLEU(), [A, B], [B, B], REFS, resamples=200)
    assert np.allclose(two_b, one_b)  # B's two seeds are the same hypotheses: nothing to resample
    # each of A's resamples draws its two seeds: both A (one_a), both B (one_b), or one each
    choices = np.stack([one_a, one_b, (one_a + one_b) / 2])
    assert np.isclose(choices, two_a).any(0).all()
    picked = np.isclose(choices, two_a).argmax(0)
    assert {0, 1, 2} <= set(picked) and 0.3 < np.mean(picked == 2) < 0.7  # one each: half the time


def test_item_bootstrap_ci_covers_a_known_difference():
    rng = np.random.default_rng(0)
    b = rng.normal(0.0, 1.0, size=(3, 2000))
    a = b + 0.5 + rng.normal(0.0, 0.2, size=(3, 2000))  # A is better by 0.5 on every item, plus noise
    samples = bootstrap_items(a, b)
    lo, hi = interval(samples)
    assert lo < 0.5 < hi and lo > 0.45 and hi < 0.55
    assert len(samples) == 1000
    same = interval(bootstrap_items(b, b))
    assert same[0] < 0 < same[1]  # the same runs: only seed draws differ, an interval around 0


def test_item_bootstrap_with_one_seed_a_side_is_the_plain_paired_bootstrap():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(1, 300)), rng.normal(size=(1, 300))
    idx = np.random.default_rng(stats.SEED).choice(300, size=(1000, 300), replace=True)
    assert np.allclose(bootstrap_items(a, b), (a[0] - b[0])[idx].mean(1))


def test_seed_variance_widens_the_interval():
    rng = np.random.default_rng(2)
    items = rng.normal(size=2000)
    offsets = np.array([[-1.0], [0.0], [1.0]])  # three seeds a whole point apart, items alike
    wide = interval(bootstrap_items(items + offsets, np.tile(items, (3, 1))))
    narrow = interval(bootstrap_items(np.tile(items, (3, 1)) + 0.01, np.tile(items, (3, 1))))
    assert wide[0] < -0.3 and wide[1] > 0.3  # the seed spread is in the interval
    assert narrow[1] - narrow[0] < 1e-9


def test_seed_tests_against_scipy():
    from scipy.stats import ttest_1samp, ttest_ind

    a, b = [31.0, 31.5, 30.2], [30.0, 30.4, 29.1, 30.3]
    assert seed_test(a, b) == ("welch", pytest.approx(ttest_ind(a, b, equal_var=False).pvalue))
    kind, p = seed_test(a, [30.0], b_fixed=True)  # a quantized copy's seeds against the model's own value
    assert kind == "one-sample" and p == pytest.approx(ttest_1samp(a, 30.0).pvalue)
    kind, p = seed_test([32.0], b)  # one run against another system's seeds: a prediction test
    t = (32.0 - np.mean(b)) / (np.std(b, ddof=1) * np.sqrt(1 + 1 / 4))
    from scipy.stats import t as student
    assert kind == "prediction" and p == pytest.approx(2 * student.sf(t, 3))
    assert seed_test([31.0], [30.0]) == (stats.ONE_SEED_EACH, None)
    assert seed_test([31.0], [30.0], b_fixed=True) == (stats.NOT_NEEDED, None)


def test_mcnemar_matches_the_exact_binomial_by_hand():
    a = [True] * 10 + [False] * 2 + [True] * 30  # 10 rows only A gets right, 2 only B, 30 both
    b = [False] * 10 + [True] * 2 + [True] * 30
    assert mcnemar_p(a, b) == pytest.approx(2 * (1 + 12 + 66) / 2**12)
    assert mcnemar_p(a, a) == 1.0


@pytest.mark.parametrize(("diff", "ci", "test", "p", "expected"), [
    (0.9, [0.3, 1.5], "welch", 0.01, "win"),
    (-0.9, [-1.5, -0.3], "welch", 0.01, "loss"),
    (0.9, [-0.1, 1.9], "welch", 0.01, "tie"),  # the interval includes 0
    (-0.9, [-1.9, 0.1], "welch", 0.01, "tie"),
    (0.1, [-0.5, -0.1], stats.NOT_NEEDED, None, "tie"),  # the interval is on the other side of the difference
    (-0.1, [0.1, 0.5], stats.NOT_NEEDED, None, "tie"),
    (0.0, [0.1, 0.5], stats.NOT_NEEDED, None, "tie"),  # no difference is neither
    (0.0, [-0.5, -0.1], stats.NOT_NEEDED, None, "tie"),
    (0.3, [0.1, 0.5], stats.NOT_NEEDED, None, "win"),  # same model, one seed: the interval decides
    (-0.3, [-0.5, -0.1], stats.NOT_NEEDED, None, "loss"),
    (0.9, [0.3, 1.5], "welch", 0.15, "tie"),  # items agree, seeds do not
    (-0.9, [-1.5, -0.3], "prediction", 0.2, "tie"),
    (0.9, [0.3, 1.5], stats.ONE_SEED_EACH, None, "tie"),  # two independent runs, one seed each
])
def test_verdict_rule_in_every_sign_case(diff, ci, test, p, expected):
    assert verdict(diff, ci, test, p) == expected


def test_the_reviews_sign_case_is_a_tie():
    assert verdict(0.1, [-0.5, -0.1]) == "tie"


def test_comparison_entry_holds_the_evidence():
    entry = comparison("moe", [31.0, 31.3, 30.7], "dense", [30.0, 30.2, 29.8], np.linspace(0.5, 1.5, 1000),
                       seeds=[0, 1, 2])
    assert entry["mean"] == {"moe": 31.0, "dense": 30.0, "diff": 1.0}
    assert entry["std"]["moe"] == pytest.approx(0.3) and entry["std"]["dense"] == pytest.approx(0.2)
    assert entry["ci95"] == pytest.approx([0.525, 1.475]) and entry["seed_test"] == "welch"
    assert entry["seed_p"] < 0.05 and entry["verdict"] == "win"
    assert set(entry) == {"seeds", "per_seed", "mean", "std", "ci95", "seed_test", "seed_p", "verdict"}
    noisy = comparison("moe", [31.0, 32.5, 29.5], "dense", [30.0, 30.2, 29.8], np.linspace(0.5, 1.5, 1000),
                       seeds=[0, 1, 2])
    assert noisy["seed_p"] > 0.05 and noisy["verdict"] == "tie"  # the items agree, the seeds do not


def simulate(seeds_a: int, seeds_b: int, *, gap: float, trials: int, rng) -> list[str]:
    """Verdicts of ``trials`` comparisons of two systems ``gap`` apart, with seed noise like ours: a seed moves
    a system's mean by ~0.4 points (the summarizer's ROUGE-L seed std is 0.36), and items vary by ~10 points
    (800 items: an item-level standard error of ~0.35)."""
    out = []
    for _ in range(trials):
        items = rng.normal(0.0, 8.0, size=300)  # how hard each item is, shared by both systems
        a = items + gap + rng.normal(0.0, 0.4, size=(seeds_a, 1)) + rng.normal(0.0, 6.0, size=(seeds_a, 300))
        b = items + rng.normal(0.0, 0.4, size=(seeds_b, 1)) + rng.normal(0.0, 6.0, size=(seeds_b, 300))
        entry = comparison("a", a.mean(1), "b", b.mean(1), bootstrap_items(a, b, resamples=200, seed=int(
            rng.integers(1 << 30))), seeds=list(range(seeds_a)))
        out.append(entry["verdict"])
    return out


def test_calibration_no_true_difference_gives_at_most_about_five_percent_wins_or_losses():
    rng = np.random.default_rng(7)
    verdicts = simulate(3, 3, gap=0.0, trials=300, rng=rng) + simulate(1, 3, gap=0.0, trials=100, rng=rng)
    false = sum(v != "tie" for v in verdicts) / len(verdicts)
    assert false <= 0.07, false  # 5% nominal; the binomial noise of 400 trials is ~1.1 points
    # the item-level interval alone (seeds held fixed) calls this noise a difference far more often
    rng = np.random.default_rng(7)
    items_only = []
    for _ in range(200):
        items = rng.normal(0.0, 8.0, size=300)
        a = items + rng.normal(0.0, 0.4, size=(3, 1)) + rng.normal(0.0, 6.0, size=(3, 300))
        b = items + rng.normal(0.0, 0.4, size=(3, 1)) + rng.normal(0.0, 6.0, size=(3, 300))
        lo, hi = interval((a.mean(0) - b.mean(0))[rng.integers(0, 300, size=(200, 300))].mean(1))
        items_only.append(lo > 0 or hi < 0)
    assert np.mean(items_only) > 0.15


def test_calibration_a_real_gap_is_found():
    verdicts = simulate(3, 3, gap=2.0, trials=60, rng=np.random.default_rng(8))
    assert sum(v == "win" for v in verdicts) / len(verdicts) > 0.7 and "loss" not in verdicts


def test_timing_verdict_reads_the_95_percent_interval_of_the_median_not_the_iqr():
    den = Timing((10.0,) * 7)
    # 5 of 7 rounds slower: the IQR lies above 1.0, but the median's 95% interval reaches below it
    num = Timing((11.0, 11.2, 11.5, 11.1, 11.3, 9.0, 9.5))
    entry = ratio(num, den)
    assert entry["iqr"][0] > 1.0 and entry["ci95"][0] < 1.0 and entry["verdict"] == "tie"
    assert entry["per_round"] == pytest.approx([1.1, 1.12, 1.15, 1.11, 1.13, 0.9, 0.95])
    clear = ratio(Timing((11.0, 11.2, 11.5, 11.1, 11.3, 11.4, 10.6)), den)
    assert clear["verdict"] == "higher" and clear["ci95"][0] > 1.0
    faster = ratio(Timing((8.0, 8.2, 8.5, 8.1, 8.3, 8.4, 7.6)), den)
    assert faster["verdict"] == "lower" and faster["ci95"][1] < 1.0
    lo, hi = median_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    assert 1.0 <= lo <= 2.0 and 4.0 <= hi <= 5.0  # medians of resamples stay among the values


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


def test_a_call_longer_than_a_block_is_timed_once_and_a_short_one_in_a_block():
    calls = []

    def slow():
        calls.append(1)
        time.sleep(0.06)

    assert time_once(slow, min_run_time=0.05) == pytest.approx(60, abs=30) and len(calls) == 1
    calls.clear()

    def fast():
        calls.append(1)
        time.sleep(0.001)

    assert time_once(fast, min_run_time=0.05) == pytest.approx(1, abs=2) and len(calls) > 10


def test_time_by_op_family_puts_each_operator_in_its_family():
    from shared_utils.timing import time_by_op_family

    a, b = torch.randn(256, 256), torch.randn(256, 256)
    split = time_by_op_family(lambda: (a @ b).log_softmax(-1).topk(3), runs=2)
    assert set(split) == {"total_ms", "matmul", "attention", "softmax and search", "copies and indexing", "other",
                          "outside operators"}
    assert split["matmul"]["ms"] > 0 and split["softmax and search"]["ms"] > 0 and split["attention"]["ms"] == 0
    assert sum(v["share"] for k, v in split.items() if k != "total_ms") == pytest.approx(1.0)
    assert sum(v["ms"] for k, v in split.items() if k != "total_ms") == pytest.approx(split["total_ms"])
