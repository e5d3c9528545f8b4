"""The summarization benchmark behind ``make moe-xsum``: MoE and dense summarizers trained with equal steps
and equal active parameters, evaluated with ROUGE and BERTScore next to lead-1 and the pretrained baselines.

    python moe_summarization/bench_summarization.py --data local   # offline: ../shared/data (~3 h, 2 cores)
    python moe_summarization/bench_summarization.py --data hub     # XSum from the hub, base size: wants a GPU

Each ``--data`` source has a preset of size and training settings (``BENCH_PRESETS`` in config.py); every
model and training field is also a flag (``--steps``, ``--lr``, ``--max-source-len``, ...) that overrides it.

Runs, under the evidence protocol: moe_top2 (8 experts, top-2, our bias balancer) and dense with every seed of
``--seeds`` (3 by default), moe_top1 and moe_hash with the first two. Each run chooses its checkpoint on a
selection split carved from the training data; the dev and test sets are only reported (offline, the test set
is the XSum slice, a transfer evaluation: no XSum training data is used). Each comparison with dense (and
with lead-1) holds every seed's score, the means and standard deviations, the paired bootstrap 95% interval
of the difference over documents (ROUGE-L and BERTScore per document, seed-averaged) and the verdict: win or
loss only when the interval excludes 0 and the gap exceeds the larger seed std. Writes
results/summarization.{json,md} and summarization_*.png.

A run is trained once (resumable after a kill) and scored once: its summaries and per-document scores are kept
in its folder (``bench_entry.json``), so a restarted sweep goes straight to the first unfinished run.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np

from moe_summarization.baselines import run_baselines
from moe_summarization.config import (
    BENCH_PRESETS,
    SIZES,
    VARIANTS,
    SummarizerConfig,
    SumTrainConfig,
    summarizer_config,
)
from moe_summarization.inference import (
    default_bertscore_model,
    lead1,
    load_summarizer,
    summarize,
    summary_item_scores,
    summary_metrics,
)
from moe_summarization.model import active_ffn_parameters, build_model
from moe_summarization.train import train
from shared_utils.checkpoint import store_result, stored_result
from shared_utils.cli import Parser, add_dataclass_flags, add_results_flags, pick, results_folder
from shared_utils.data import load_documents, shared_data
from shared_utils.errors import UserError, cli_main
from shared_utils.report import VERDICT_RULE, pyplot, save_figure, verdict_cell
from shared_utils.runtime import device_info, pick_device
from shared_utils.stats import bootstrap_items, comparison

RESULTS = Path(__file__).resolve().parent / "results"
DATA = {
    "local": {"train": shared_data("summarization/train.jsonl"), "dev": shared_data("summarization/dev.jsonl"),
              "test": shared_data("xsum/test-sample.jsonl"), "names": ("summarization.dev", "xsum.test-sample")},
    "hub": {"train": "hf:EdinburghNLP/xsum::train", "dev": "hf:EdinburghNLP/xsum::validation",
            "test": "hf:EdinburghNLP/xsum::test", "names": ("xsum.validation", "xsum.test")},
}
METRICS = ("rouge1", "rouge2", "rougeL", "rougeLsum", "bertscore_f1")
VARIANTS_ORDER = ("moe_top2", "dense", "moe_top1", "moe_hash")
BEAM = 4  # the beam every run is evaluated with
HINT = "pass --data local (make moe-xsum MOE_DATA=local) to use ../shared/data"


def runs_to_train(seeds: list[int], spread_variants: list[str]) -> list[tuple[str, str, int]]:
    """(run name, variant, seed): ``spread_variants`` (the headline pair) with every seed, the others with the
    first two; seed-major, so a sweep stopped early has every variant's first seeds."""
    seeds_of = {v: seeds if v in spread_variants else seeds[:2] for v in VARIANTS_ORDER}
    return [(f"{v}_seed{s}", v, s) for s in seeds for v in VARIANTS_ORDER if s in seeds_of[v]]


def metrics_rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def expert_load(run: Path) -> list[dict]:
    """Per-step max/mean load of every MoE layer, from the run's metrics.jsonl."""
    rows = metrics_rows(run)
    return [{"step": r["step"], "max_over_mean": [m["max_over_mean"] for m in r["moe"]],
             "dropped_fraction": [m["dropped_fraction"] for m in r["moe"]]} for r in rows if "moe" in r]


def per_source(docs, preds: list[str]) -> dict[str, float]:
    """ROUGE-L by the document's ``source`` field (where the dev set mixes several)."""
    from shared_utils.metrics import rouge_scores

    groups = defaultdict(list)
    for d, p in zip(docs, preds):
        groups[d.source or "all"].append((p, d.summary))
    return {s: rouge_scores([p for p, _ in g], [r for _, r in g])["rougeL"] for s, g in sorted(groups.items())}


def score_run(run: Path, info: dict, eval_sets: dict, paths: dict, bert: str, device) -> dict:
    """A trained run's beam-4 summaries of every evaluation set and their per-document scores (``preds``,
    ``items``, and the means as ``scores``), made once and kept in the run folder: a restarted sweep reads them
    back instead of decoding and scoring every finished run again."""
    done = run / "bench_entry.json"
    key = {"checkpoint": info["best"], "steps": info["step"], "bertscore_model": bert, "beam_size": BEAM,
           "eval_sets": {name: [paths[split], len(docs)] for split, (name, docs) in zip(("dev", "test"),
                                                                                      eval_sets.items())}}
    stored = stored_result(done, key)  # scored under other settings (other sets, scorer): scored again
    if stored is not None:
        return stored
    model, tok, mcfg = load_summarizer(run, device)
    entry = {"preds": {}, "items": {}, "scores": {}}
    for name, docs in eval_sets.items():
        entry["preds"][name] = summarize(model, tok, mcfg, docs, device, beam_size=BEAM)
        entry["items"][name] = summary_item_scores(entry["preds"][name], [d.summary for d in docs], bert)
        entry["scores"][name] = {k: statistics.mean(v) for k, v in entry["items"][name].items()}
    store_result(done, key, entry)
    return entry


def compare(name_a: str, items_a: list[dict], name_b: str, items_b: list[dict], metric: str, seeds) -> dict:
    """The protocol's comparison entry of two systems on one metric: ``items_*`` are each seed's per-document
    scores (one dict of metric -> list per seed), in the same document order. lead-1 is deterministic: it has
    no seed variance of its own (``b_fixed``)."""
    per_a = [float(np.mean(run[metric])) for run in items_a]
    per_b = [float(np.mean(run[metric])) for run in items_b]
    samples = bootstrap_items([run[metric] for run in items_a], [run[metric] for run in items_b])
    return comparison(name_a, per_a, name_b, per_b, samples, seeds, b_fixed=name_b == "lead1")


def write_report(result: dict, out: Path) -> None:
    plt = pyplot()

    sets = result["eval_sets"]
    b = result["budget"]
    lines = [f"# Summarization benchmark ({result['device']}, {result['machine']})", "",
             f"Budget: {b['steps']} steps of ~{b['batch_tokens']} tokens per model, size `{b['size']}` "
             f"(d_model {b['d_model']}, {b['layers']} layers, active FFN parameters {b['active_ffn_parameters']:,} "
             f"for every model), documents truncated to {b['max_source_len']} tokens, "
             f"{'pointer-generator (copy) output' if b.get('copy') else 'no copy mechanism'}, "
             f"{'lowercased' if b.get('lowercase') else 'cased'} vocabulary, {b.get('schedule', 'inverse_sqrt')} "
             f"learning-rate schedule (peak {b.get('lr', '?')}), MoE capacity factor "
             f"{b.get('capacity_factor') or 'none (dropless)'}; beam 4, no-repeat-3-gram; "
             f"{', '.join(f'{s}: {n} documents' for s, n in result['documents'].items())}. "
             f"BERTScore model: `{result['bertscore_model']}`. Means over seeds (± the std, where several).", ""]
    if result.get("transfer_note"):
        lines += [result["transfer_note"], ""]
    lines += ["| model | " + " | ".join(f"{s} R-1 | R-2 | R-L | BERTScore" for s in sets) + " |",
              "| --- |" + " ---: |" * (4 * len(sets))]
    for name, r in result["models"].items():
        cells = []
        for s in sets:
            m = r[s]
            std = r.get("std", {}).get(s, {}).get("rougeL")
            rl = f"{m['rougeL']:.2f}" + (f" ± {std:.2f}" if std is not None else "")
            cells.append(f"{m['rouge1']:.2f} | {m['rouge2']:.2f} | {rl} | {m['bertscore_f1']:.2f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for name, r in result["baselines"].items():
        if "not_run" in r:
            lines.append(f"| {name} | not run: {r['not_run']} |")
        else:
            lines.append(f"| {name} | " + " | ".join(
                f"{r[s]['rouge1']:.2f} | {r[s]['rouge2']:.2f} | {r[s]['rougeL']:.2f} | {r[s]['bertscore_f1']:.2f}"
                for s in sets if s in r) + " |")
    lines += ["", f"Final dev loss (no smoothing, first {b.get('dev_limit', 200)} dev documents): " +
              ", ".join(f"{r} {v['final_dev_loss']:.3f}" for r, v in b["runs"].items() if "final_dev_loss" in v)]
    lines += ["", f"Comparisons (difference of the seed means; {VERDICT_RULE}):", "",
              "| comparison | set | metric | per seed (A; B) | A - B | 95% CI | verdict |",
              "| --- | --- | --- | --- | ---: | ---: | --- |"]
    for name, by_set in result.get("comparisons", {}).items():
        for s, by_metric in by_set.items():
            for metric, c in by_metric.items():
                a, b = c["per_seed"]
                lines.append(f"| {name} | {s} | {metric} | "
                             f"{', '.join(f'{x:.2f}' for x in c['per_seed'][a])}; "
                             f"{', '.join(f'{x:.2f}' for x in c['per_seed'][b])} | {c['mean']['diff']:+.2f} | "
                             f"[{c['ci95'][0]:+.2f}, {c['ci95'][1]:+.2f}] | **{verdict_cell(c)}** |")
    lines.append("")
    (out / "summarization.md").write_text("\n".join(lines) + "\n", encoding="utf-8")

    fig, axes = plt.subplots(1, len(sets), figsize=(6 * len(sets), 4), squeeze=False)
    names = list(result["models"])
    for ax, s in zip(axes[0], sets):
        for j, metric in enumerate(("rouge1", "rouge2", "rougeL", "bertscore_f1")):
            ax.bar([i + 0.2 * j for i in range(len(names))], [result["models"][n][s][metric] for n in names],
                   width=0.2, label=metric)
        ax.set_xticks([i + 0.3 for i in range(len(names))], names, rotation=20)
        ax.set_title(s)
    axes[0][0].legend(fontsize=8)
    save_figure(fig, out / "summarization_scores.png")
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, load in result["expert_load"].items():
        for layer in range(len(load[0]["max_over_mean"]) if load else 0):
            ax.plot([r["step"] for r in load], [r["max_over_mean"][layer] for r in load], lw=0.8,
                    label=f"{name} layer {layer}")
    ax.set_xlabel("step")
    ax.set_ylabel("max / mean expert load")
    ax.legend(fontsize=7)
    save_figure(fig, out / "summarization_expert_load.png")
    fig, ax = plt.subplots(figsize=(7, 4))
    sources = sorted({s for r in result["per_source"].values() for s in r})
    for j, (name, r) in enumerate(result["per_source"].items()):
        ax.bar([i + 0.15 * j for i in range(len(sources))], [r.get(s, 0.0) for s in sources], width=0.15,
               label=name)
    ax.set_xticks([i + 0.3 for i in range(len(sources))], sources, rotation=20)
    ax.set_ylabel(f"ROUGE-L ({sets[0]})")
    ax.legend(fontsize=8)
    save_figure(fig, out / "summarization_per_source.png")


@cli_main
def main(argv: list[str] | None = None) -> None:
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", choices=tuple(DATA), default="hub")
    for split in ("train", "dev", "test"):
        p.add_argument(f"--{split}", default=None, help=f"your own {split} JSONL instead of --data's (named by "
                       "its file name in the results)")
    p.add_argument("--preset", "--size", dest="size", choices=tuple(SIZES), default=None,
                   help="model size (default: the --data preset's; --size is its old name)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--spread-variants", nargs="+", default=["moe_top2", "dense"],
                   help="variants trained with every seed (the others: the first two)")
    p.add_argument("--eval-limit", type=int, default=0, help="documents per evaluation set (0 = all)")
    # any model or training field; not given = the --data preset's value (BENCH_PRESETS), else the config's
    add_dataclass_flags(p, SummarizerConfig, skip=("moe",))
    add_dataclass_flags(p, SumTrainConfig, skip=("train", "dev", "seed", "expert_parallel"))
    p.add_argument("--runs", type=Path, default=Path("runs/sum-bench"))
    add_results_flags(p, RESULTS, "sum-bench-results")
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    args.out = results_folder(args, RESULTS, "sum-bench-results")
    flags = vars(args)
    preset = dict(BENCH_PRESETS[args.data])
    size_name = args.size or preset.pop("size")
    preset.pop("size", None)
    model_over = {**{k: v for k, v in preset.items() if k in SummarizerConfig.__dataclass_fields__},
                  **pick(flags, SummarizerConfig)}
    train_over = {**{k: v for k, v in preset.items() if k in SumTrainConfig.__dataclass_fields__},
                  **pick(flags, SumTrainConfig)}
    device = pick_device(args.device)
    paths = {**DATA[args.data], **{k: getattr(args, k) for k in ("train", "dev", "test") if getattr(args, k)}}
    paths["names"] = tuple(Path(paths[k]).stem if getattr(args, k) else name
                           for k, name in zip(("dev", "test"), DATA[args.data]["names"]))
    if paths["names"][0] == paths["names"][1]:
        raise UserError(f"the dev and test sets are both named '{paths['names'][0]}': give them different file names")
    eval_sets = {}
    for split, name in zip(("dev", "test"), paths["names"]):
        docs = load_documents(paths[split], local_hint=HINT).records
        eval_sets[name] = docs[: args.eval_limit or None]
    bert = default_bertscore_model()
    steps = train_over.get("steps", SumTrainConfig.steps)
    cfg = SumTrainConfig(**{"eval_every": max(1, steps // 4), **train_over, "train": paths["train"],
                            "dev": paths["dev"]})
    per_run, items, loads, sources, train_info = {}, {}, {}, {}, {}
    for run_name, variant, seed in runs_to_train(args.seeds, args.spread_variants):
        run = args.runs / run_name
        info = train(summarizer_config(size_name, variant, **model_over), replace(cfg, seed=seed), run, str(device))
        # time of the optimizer steps (validation excluded), from the log: right across a kill and resume
        rows = metrics_rows(run)
        train_info[run_name] = {"steps": info["step"], "chosen_step": info["best"].get("step"),
                                "step_seconds": sum(r["ms_per_step"] for r in rows) / 1e3,
                                "final_dev_loss": [r for r in rows if "dev/loss" in r][-1]["dev/loss"]}
        entry = score_run(run, info, eval_sets, paths, bert, device)
        per_run[run_name], items[run_name] = entry["scores"], entry["items"]
        if seed == args.seeds[0]:
            dev = paths["names"][0]
            sources[variant] = per_source(eval_sets[dev], entry["preds"][dev])
        if variant != "dense" and seed == args.seeds[0]:
            loads[variant] = expert_load(run)
        print(run_name, json.dumps({n: round(m["rougeL"], 2) for n, m in per_run[run_name].items()}), flush=True)

    models: dict[str, dict] = {}
    for variant in ("moe_top2", "moe_top1", "moe_hash", "dense"):
        seeds = [r for r in per_run if r.rsplit("_seed", 1)[0] == variant]
        entry = {s: {m: statistics.mean(per_run[r][s][m] for r in seeds) for m in METRICS} for s in eval_sets}
        if len(seeds) > 1:
            entry["std"] = {s: {m: statistics.stdev(per_run[r][s][m] for r in seeds) for m in METRICS}
                            for s in eval_sets}
        entry["runs"] = {r: per_run[r] for r in seeds}
        models[variant] = entry
    lead_items = {s: summary_item_scores([lead1(d.document) for d in docs], [d.summary for d in docs], bert)
                  for s, docs in eval_sets.items()}
    models["lead1"] = {s: {k: statistics.mean(v) for k, v in lead_items[s].items()} for s in eval_sets}

    def runs_of(variant: str) -> list[str]:
        return [r for r in per_run if r.rsplit("_seed", 1)[0] == variant]

    comparisons = {}
    for a, b in (("moe_top2", "dense"), ("moe_top1", "dense"), ("moe_hash", "dense"), ("moe_top2", "lead1"),
                 ("dense", "lead1")):
        runs_b = runs_of(b) or ["lead1"]
        comparisons[f"{a}_vs_{b}"] = {
            s: {metric: compare(a, [items[r][s] for r in runs_of(a)], b,
                                [lead_items[s] if r == "lead1" else items[r][s] for r in runs_b], metric,
                                {a: [int(r.rsplit("_seed", 1)[1]) for r in runs_of(a)],
                                 b: [int(r.rsplit("_seed", 1)[1]) for r in runs_of(b)]})
                for metric in ("rougeL", "bertscore_f1")}
            for s in eval_sets}
    sources["lead1"] = per_source(eval_sets[paths["names"][0]], [lead1(d.document) for d in
                                                                  eval_sets[paths["names"][0]]])
    baselines = run_baselines(eval_sets[paths["names"][1]], device,
                              scorer=lambda preds, refs: {paths["names"][1]: summary_metrics(preds, refs, bert)})
    mcfg = summarizer_config(size_name, "dense", **model_over)
    moe = summarizer_config(size_name, "moe_top2", **model_over).moe
    result = {
        "budget": {"steps": cfg.steps, "batch_tokens": cfg.batch_tokens, "size": size_name, "seeds": args.seeds,
                   "d_model": mcfg.d_model, "layers": f"{mcfg.encoder_layers}+{mcfg.decoder_layers}",
                   "max_source_len": mcfg.max_source_len, "copy": mcfg.copy, "lowercase": mcfg.lowercase,
                   "schedule": cfg.schedule, "lr": cfg.lr, "warmup": cfg.warmup,
                   "capacity_factor": moe.capacity_factor, "balancer": VARIANTS["moe_top2"]["balancer"],
                   "dev_limit": cfg.dev_limit,
                   "data": args.data, "train": paths["train"],
                   "active_ffn_parameters": active_ffn_parameters(build_model(mcfg)), "runs": train_info},
        "device": str(device),
        "device_info": device_info(device), "machine": platform.processor() or platform.machine(),
        "eval_sets": list(eval_sets), "documents": {s: len(d) for s, d in eval_sets.items()},
        "bertscore_model": bert, "models": models, "baselines": baselines, "per_source": sources,
        "expert_load": loads,
        "comparisons": comparisons,
        "moe_vs_dense": {s: comparisons["moe_top2_vs_dense"][s]["rougeL"]["verdict"] for s in eval_sets},
    }
    if args.data == "local" and not args.test:
        result["transfer_note"] = ("xsum.test-sample is a transfer evaluation: the models never saw XSum "
                                   "training data (they learned headline generation), so its scores are not "
                                   "comparable to XSum-trained systems.")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summarization.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    write_report(result, args.out)
    print(json.dumps({v: {s: round(models[v][s]["rougeL"], 2) for s in eval_sets} for v in models}, indent=2))
    print("moe_top2 vs dense:", result["moe_vs_dense"])


if __name__ == "__main__":
    main()
