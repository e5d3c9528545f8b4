"""Re-derive every verdict in every results JSON from the data the file (or its runs) keeps, under the current
rule of ``shared_utils.stats`` and ``shared_utils.timing``, then re-render each study's markdown from it.

    python rederive_verdicts.py            # rewrite the results files and their markdown
    python rederive_verdicts.py --check    # only list what would change (exit 1 if anything would)

No model is trained or timed again:
- a timed ratio's rounds are found in the file: the two timings (``samples_ms``) whose per-round ratio gives
  exactly the stored median and IQR; the 95% interval of its median and the verdict follow;
- a translation comparison gets the two-level bootstrap from the hypotheses each run kept
  (``translation/results/training_runs``) and the dev sets' references (``--translation-data``);
- a summarization comparison gets it from the per-document scores each run's record keeps
  (``moe_summarization/results/summarization_runs``);
- every other comparison keeps its stored item interval (its runs kept no per-item scores: the summarizer's and
  the quantization bench's per-row results lived in run folders) and gets the seed-level test from its
  per-seed scores; the entry's ``ci95_kind`` says which interval it holds.
Each changed verdict is printed as ``file: path: old -> new``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from shared_utils.stats import bootstrap_corpus, comparison, seed_test, verdict
from shared_utils.timing import median_interval, ratio_verdict, spread

ROOT = Path(__file__).resolve().parent
# comparisons whose B has no seed variance of its own: variants of one trained model (decoding strategies,
# quantized copies) and the deterministic lead-1 baseline
B_FIXED_FILES = ("translation/results/decoding.json", "quantization/results/")
B_FIXED_NAMES = ("lead1",)
ITEMS_ONLY = "items only, seeds fixed (the runs kept no per-item scores)"
TWO_LEVEL = "two-level: seeds, then items"


def walk(node, path=""):
    """(path, dict) for every dict in a JSON tree."""
    if isinstance(node, dict):
        yield path, node
        for k, v in node.items():
            yield from walk(v, f"{path}/{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, f"{path}[{i}]")


def timings_of(tree) -> list[np.ndarray]:
    return [np.asarray(d["samples_ms"], float) for _, d in walk(tree) if "samples_ms" in d]


def rounds_of(entry: dict, timings: list[np.ndarray]) -> np.ndarray:
    """The per-round ratios behind a stored ratio entry: the pair of timings that reproduces its median and IQR."""
    if "per_round" in entry:
        return np.asarray(entry["per_round"], float)
    for num in timings:
        for den in timings:
            if len(num) != entry["repeats"] or len(den) != len(num):
                continue
            s = spread(num / den)
            if np.isclose(s["median"], entry["median"], rtol=1e-12) and np.allclose(s["iqr"], entry["iqr"],
                                                                                    rtol=1e-12):
                return num / den
    raise SystemExit(f"no pair of timings in the file gives the ratio {entry}")


def rederive_ratio(entry: dict, timings: list[np.ndarray]) -> None:
    per_round = rounds_of(entry, timings)
    ci = median_interval(per_round)
    entry.update(per_round=[float(r) for r in per_round], ci95=ci, verdict=ratio_verdict(ci))


def translation_runs(runs_dir: Path) -> dict:
    return {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(runs_dir.glob("*.json"))}


def rederive_translation(entry: dict, dev: str, metric_name: str, runs: dict, refs: dict) -> dict:
    """A training.json comparison again, with the two-level bootstrap over the runs' kept hypotheses."""
    from sacrebleu.metrics import BLEU, CHRF

    metric = BLEU() if metric_name == "bleu" else CHRF(word_order=2)
    (a, b), seeds = list(entry["per_seed"]), entry["seeds"]
    hyps = {s: [runs[f"{s}_seed{seed}"]["entry"]["hyps"][dev] for seed in seeds[s]] for s in (a, b)}
    sa, sb = bootstrap_corpus(metric, hyps[a], hyps[b], refs[dev])
    new = comparison(a, entry["per_seed"][a], b, entry["per_seed"][b], sa - sb, seeds)
    return {**new, "ci95_kind": TWO_LEVEL}


def rederive_summarization(tree: dict, records_dir: Path) -> dict:
    """summarization.json's comparisons again, two-level, from the per-document scores its run records keep."""
    from moe_summarization.study import comparisons

    records = {p.stem: json.loads(p.read_text(encoding="utf-8"))["entry"] for p in sorted(records_dir.glob("*.json"))}
    lead = records.pop("lead1")
    records = {name: r for name, r in records.items() if name in tree["runs"]}  # those the tables cover
    tree["comparisons"] = comparisons(records, lead["items"], tree["best_of_ours"], tree["eval_sets"])
    return tree


def rederive_comparison(entry: dict, b_fixed: bool) -> None:
    (a, b) = list(entry["per_seed"])
    test, p = seed_test(entry["per_seed"][a], entry["per_seed"][b], b_fixed=b_fixed)
    entry.update(seed_test=test, seed_p=p, verdict=verdict(entry["mean"]["diff"], entry["ci95"], test, p))
    one_seed = len(entry["per_seed"][a]) == 1 and len(entry["per_seed"][b]) == 1
    entry.setdefault("ci95_kind", TWO_LEVEL if one_seed else ITEMS_ONLY)  # one seed a side: the same interval


def rederive_method(entry: dict) -> None:
    """A quantization bench row: the method's calibration seeds against fp32's one value, same model."""
    fp32 = entry["accuracy"] * 100 - entry["diff_vs_fp32"]
    test, p = seed_test(entry["accuracy_per_seed"], [fp32], b_fixed=True)
    entry.update(seed_test_vs_fp32=test, seed_p_vs_fp32=p,
                 verdict_vs_fp32=verdict(entry["diff_vs_fp32"], entry["ci95_vs_fp32"], test, p))
    entry.setdefault("ci95_kind_vs_fp32", TWO_LEVEL if len(entry["accuracy_per_seed"]) == 1 else ITEMS_ONLY)


def verdicts(tree) -> dict[str, str]:
    return {f"{path}/{key}": d[key] for path, d in walk(tree) for key in ("verdict", "verdict_vs_fp32") if key in d}


def rederive_file(path: Path, refs: dict) -> dict:
    tree = json.loads(path.read_text(encoding="utf-8"))
    rel = path.relative_to(ROOT).as_posix()
    fixed_file = rel.startswith(B_FIXED_FILES)
    timings = timings_of(tree)
    runs = translation_runs(path.parent / "training_runs") if rel == "translation/results/training.json" else None
    if rel == "moe_summarization/results/summarization.json" and (path.parent / "summarization_runs").is_dir():
        return rederive_summarization(tree, path.parent / "summarization_runs")
    for where, d in list(walk(tree)):
        if "verdict_vs_fp32" in d:
            rederive_method(d)
        elif "verdict" in d and "per_seed" in d:
            if runs is not None:
                dev, metric_name = where.split("/")[-2:]
                d.update(rederive_translation(d, dev, metric_name, runs, refs))
            else:
                rederive_comparison(d, fixed_file or list(d["per_seed"])[1] in B_FIXED_NAMES)
        elif "verdict" in d and "median" in d:
            rederive_ratio(d, timings)
    if runs is not None:  # best_vs_marian is a copy of one comparison: copy it again
        tree["comparisons"]["best_vs_marian"] = tree["comparisons"][f"{tree['best_scheme']}_vs_marian_peer"]
        tree["throughput_ratio_vs_marian"] = tree["throughput"]["throughput_ratio_vs_marian"]
    return tree


def render(rel: str, tree: dict, path: Path) -> None:
    """The study's own markdown (and plots) from the re-derived file."""
    out = path.parent
    if rel == "translation/results/training.json":
        from translation.reports import write_training_report
        write_training_report(tree, out)
    elif rel == "translation/results/decoding.json":
        from translation.reports import write_decoding_report
        write_decoding_report(tree, out)
    elif rel == "translation/results/decoding_speed.json":
        from translation.reports import write_speed_report
        write_speed_report(tree, out)
    elif rel in ("translation/results/ablations.json", "translation/results/recipe.json"):
        from translation.reports import recipe_report
        path.with_suffix(".md").write_text("\n".join(recipe_report(tree)) + "\n", encoding="utf-8")
    elif rel == "moe_summarization/results/summarization.json":
        from moe_summarization.reports import write_summarization_report
        write_summarization_report(tree, out)
    elif rel == "moe_summarization/results/moe_layer.json":
        from moe_summarization.reports import write_layer_report
        write_layer_report(tree, path.with_suffix(".md"))
    elif rel.startswith("quantization/results/") and "methods" in tree:
        from quantization.reports import plot, write_markdown
        write_markdown(tree, path.with_suffix(".md"))
        plot(tree, out, path.stem)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="list the changes, write nothing (exit 1 if any)")
    p.add_argument("--translation-data", type=Path, default=ROOT.parent / "shared/data/translation",
                   help="the folder of the dev sets training.json was scored on (default: %(default)s)")
    args = p.parse_args(argv)
    from translation.data import load_parallel

    refs = {name: [q.tgt for q in load_parallel(args.translation_data / f"{name}.fi-en.tsv").records]
            for name in ("dev.tatoeba", "dev.newstest2018")}
    changed = 0
    for path in sorted(ROOT.glob("*/results/**/*.json")):
        rel = path.relative_to(ROOT).as_posix()
        before = json.loads(path.read_text(encoding="utf-8"))
        if not verdicts(before):
            continue
        after = rederive_file(path, refs)
        old, new = verdicts(before), verdicts(after)
        for key in old:
            if old[key] != new[key]:
                changed += 1
                print(f"{rel}: {key}: {old[key]} -> {new[key]}")
        if not args.check:
            if after != before:
                path.write_text(json.dumps(after, indent=2), encoding="utf-8")
            render(rel, after, path)  # the markdown follows the writers as they are now
    print(f"{changed} verdicts changed")
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
