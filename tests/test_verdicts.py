"""Every verdict in every results file follows the current rule (``shared_utils.stats``, ``shared_utils.timing``),
recomputed from what the entry itself holds: a timed ratio's rounds, a comparison's per-seed scores and interval.
``python rederive_verdicts.py`` brings a file written under an older rule up to date."""

import json
from pathlib import Path

import pytest

from rederive_verdicts import walk
from shared_utils import stats
from shared_utils.stats import seed_test, verdict
from shared_utils.timing import median_interval, ratio_verdict

ROOT = Path(__file__).resolve().parents[1]
FILES = sorted(ROOT.glob("*/results/**/*.json"))
FIXED_B_TESTS = (stats.ONE_SAMPLE, stats.NOT_NEEDED)


def problems(tree) -> list[str]:
    out = []
    for where, d in walk(tree):
        if "verdict_vs_fp32" in d:  # a quantization bench row: the method's seeds against fp32, same model
            fp32 = d["accuracy"] * 100 - d["diff_vs_fp32"]
            test, p = seed_test(d["accuracy_per_seed"], [fp32], b_fixed=True)
            expected = verdict(d["diff_vs_fp32"], d["ci95_vs_fp32"], test, p)
            if (d.get("seed_test_vs_fp32"), d["verdict_vs_fp32"]) != (test, expected):
                out.append(f"{where}: {d['verdict_vs_fp32']}, the rule says {expected}")
        elif "verdict" in d and "per_seed" in d:
            a, b = d["per_seed"]
            test, p = seed_test(d["per_seed"][a], d["per_seed"][b], b_fixed=d.get("seed_test") in FIXED_B_TESTS)
            expected = verdict(d["mean"]["diff"], d["ci95"], test, p)
            if (d.get("seed_test"), d["verdict"]) != (test, expected) or p != pytest.approx(d.get("seed_p")):
                out.append(f"{where}: {d['verdict']} ({d.get('seed_test')}), the rule says {expected} ({test})")
        elif "verdict" in d and "median" in d:
            if "per_round" not in d:
                out.append(f"{where}: a timed ratio without its rounds")
                continue
            ci = median_interval(d["per_round"])
            if d["ci95"] != pytest.approx(ci) or d["verdict"] != ratio_verdict(ci):
                out.append(f"{where}: {d['verdict']} {d['ci95']}, the rule says {ratio_verdict(ci)} {ci}")
    return out


@pytest.mark.parametrize("path", FILES, ids=[p.relative_to(ROOT).as_posix() for p in FILES])
def test_every_verdict_in_the_file_follows_the_rule(path):
    assert not problems(json.loads(path.read_text(encoding="utf-8")))


def test_the_check_finds_a_verdict_the_rule_does_not_give():
    win = {"per_seed": {"a": [31.0, 33.0, 29.0], "b": [30.0, 30.2, 29.8]}, "mean": {"diff": 1.0},
           "ci95": [0.4, 1.6], "seed_test": "welch", "seed_p": 0.48, "verdict": "win"}  # the seeds say tie
    sign = {"per_seed": {"a": [0.1], "b": [0.0]}, "mean": {"diff": 0.1}, "ci95": [-0.5, -0.1],
            "seed_test": stats.NOT_NEEDED, "seed_p": None, "verdict": "win"}  # the interval is on the other side
    timed = {"median": 1.1, "iqr": [1.05, 1.12], "repeats": 7, "per_round": [1.1, 1.12, 1.15, 1.11, 1.13, 0.9, 0.95],
             "ci95": [0.95, 1.13], "verdict": "higher"}  # the IQR clears 1.0, the median's 95% interval does not
    found = problems({"x": win, "y": sign, "z": timed})
    assert [f.split(":")[0] for f in found] == ["/x", "/y", "/z"]
