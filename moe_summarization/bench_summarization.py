"""The summarization benchmark behind ``make moe-xsum``: MoE and dense summarizers and the BART / T5 / Llama
architecture peers, trained with equal steps and (active) parameters, evaluated with ROUGE and BERTScore next to
lead-1 and the pretrained baselines.

    python moe_summarization/bench_summarization.py --data local       # offline: xsum-style pairs (../shared/data)
    python moe_summarization/bench_summarization.py --data headlines   # offline: the headline mix
    python moe_summarization/bench_summarization.py --data hub         # XSum from the hub, base size: wants a GPU
    python moe_summarization/bench_summarization.py --data local --only dense_seed0 t5_seed0   # a part of the sweep

Each ``--data`` source has a preset of size and training settings (``BENCH_PRESETS`` in config.py); every
model and training field is also a flag (``--steps``, ``--lr``, ``--max-source-len``, ...) that overrides it.

Runs, under the evidence protocol: moe_top2 (8 experts, top-2, our bias balancer) and dense with every seed of
``--seeds`` (3 by default); moe_top1, moe_hash and the peers (bart, t5, llama) with the first two. Each run
chooses its checkpoint on a selection split carved from the training data; the dev and test sets are only
reported (offline, the test set is the real XSum slice: no XSum training data is used). "Ours" for the
comparisons with lead-1 and the peers is the model of ours with the best mean selection-split ROUGE-L, chosen
before any test score is read. Each comparison holds every seed's score, the means and stds, the two-level
paired bootstrap 95% interval of the difference (seeds, then documents) and the verdict. Writes
results/summarization.{json,md} and summarization_*.png.

Every finished run is one file, ``summarization_runs/<run>.json`` beside the tables: its training record,
learning curve, summaries of the test set and per-document scores, under the settings it was made with. A
restarted sweep skips the runs that have one and resumes the run it was killed in (from its folder under
``--runs``); the tables cover the runs finished so far, and say which are still to come.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time
from dataclasses import asdict, replace
from pathlib import Path

from moe_summarization.config import BENCH_PRESETS, SIZES, SummarizerConfig, SumTrainConfig, summarizer_config
from moe_summarization.data import load_documents
from moe_summarization.inference import (
    default_bertscore_model,
    lead1,
    load_summarizer,
    summarize,
    summary_item_scores,
    summary_metrics,
)
from moe_summarization.model import build_model
from moe_summarization.peers import parameter_count
from moe_summarization.pretrained import run_baselines
from moe_summarization.reports import write_summarization_report
from moe_summarization.study import MODELS, OURS, PEERS, comparisons
from moe_summarization.training import train
from shared_utils.checkpoint import atomic_write, stored_result
from shared_utils.cli import Parser, add_dataclass_flags, add_results_flags, pick, results_folder
from shared_utils.data import shared_data
from shared_utils.errors import UserError, cli_main
from shared_utils.runtime import device_info, pick_device

RESULTS = Path(__file__).resolve().parent / "results"
TEST = shared_data("xsum/test-sample.jsonl")
DATA = {
    "local": {"train": shared_data("xsum-style/train.jsonl"), "dev": shared_data("xsum-style/dev.jsonl"),
              "test": TEST, "names": ("xsum-style.dev", "xsum.test-sample")},
    "headlines": {"train": shared_data("summarization/train.jsonl"), "dev": shared_data("summarization/dev.jsonl"),
                  "test": TEST, "names": ("summarization.dev", "xsum.test-sample")},
    "hub": {"train": "hf:EdinburghNLP/xsum::train", "dev": "hf:EdinburghNLP/xsum::validation",
            "test": "hf:EdinburghNLP/xsum::test", "names": ("xsum.validation", "xsum.test")},
}
METRICS = ("rouge1", "rouge2", "rougeL", "rougeLsum", "bertscore_f1")
BEAM = 4  # the beam every run is evaluated with
EXAMPLES, EXAMPLE_SEED = 5, 2026  # test documents shown with every model's summary: drawn by this seed alone
HINT = "pass --data local (make moe-xsum MOE_DATA=local) to use ../shared/data"


def runs_to_train(seeds: list[int], spread: list[str]) -> list[tuple[str, str, int]]:
    """(run name, model, seed): the ``spread`` models (the headline pair) with every seed, the others with the
    first two; seed-major, so a sweep stopped early has every model's first seeds."""
    seeds_of = {m: seeds if m in spread else seeds[:2] for m in MODELS}
    return [(f"{m}_seed{s}", m, s) for s in seeds for m in MODELS if s in seeds_of[m]]


def example_indices(n: int) -> list[int]:
    """The test documents the report shows: fixed by :data:`EXAMPLE_SEED` and the set's size, before any output."""
    return sorted(random.Random(EXAMPLE_SEED).sample(range(n), min(EXAMPLES, n)))


def curve(run: Path) -> list[dict]:
    """The learning curve from the run's metrics.jsonl: every validation row's step, train loss and scores."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    keep = ("step", "loss", "select/loss", "select/rougeL", "dev/loss", "dev/rougeL")
    return [{k: r[k] for k in keep if k in r} for r in rows if "select/rougeL" in r or "dev/rougeL" in r]


def expert_load(run: Path) -> list[dict]:
    """Per-step max/mean load of every MoE layer, from the run's metrics.jsonl (every 10th step)."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{"step": r["step"], "max_over_mean": [m["max_over_mean"] for m in r["moe"]]}
            for r in rows if "moe" in r and r["step"] % 10 == 0]


def run_key(mcfg: SummarizerConfig, cfg: SumTrainConfig, bert: str, eval_sets: dict) -> dict:
    """The settings a run's record is made under: a record made under others is never mixed in."""
    return {"model": asdict(mcfg), "train": asdict(cfg), "bertscore_model": bert, "beam_size": BEAM,
            "eval_sets": {s: len(d) for s, d in eval_sets.items()}}


def per_source(docs, preds: list[str]) -> dict[str, float]:
    """ROUGE-L by the document's ``source`` field (the xsum-style dev set mixes BBC and Reuters)."""
    from moe_summarization.metrics import rouge_scores

    groups: dict[str, list] = {}
    for d, p in zip(docs, preds):
        groups.setdefault(d.source or "all", []).append((p, d.summary))
    return {s: rouge_scores([p for p, _ in g], [r for _, r in g])["rougeL"] for s, g in sorted(groups.items())}


def backfill_wall_time(path: Path, key: dict, record: dict, folder: Path) -> dict:
    """A record made before runs timed themselves gets its wall time from its files, once: train.py rewrites the
    run's config.json at every start, and the record is written when scoring ends, so the minutes between them
    are the run's whole time (training, validation, scoring) where it ran in one sitting, and its last sitting
    where it resumed. Without the run folder (a fresh clone) the record is left as it is."""
    config = folder / "config.json"
    if not config.is_file() or config.stat().st_mtime > path.stat().st_mtime:
        return record
    record = {**record, "wall_minutes": (path.stat().st_mtime - config.stat().st_mtime) / 60,
              "wall_measured": "file times: config.json (written at each start) to this record"}
    atomic_write(path, json.dumps({"key": key, "entry": record}))
    return record


RUN_FIELDS = ("model", "seed", "steps", "chosen_step", "select_rougeL", "step_seconds", "parameters", "d_ff",
              "wall_minutes", "wall_measured")  # what summarization.json's ``runs`` keeps of each record


def finished_record(path: Path, key: dict, folder: Path, stale: str | None = None) -> dict | None:
    """A run's record, if it was made under ``key`` (None while the run is to come), with its wall time."""
    stored = stored_result(path, key, stale=stale)
    return stored if stored is None or "wall_minutes" in stored else backfill_wall_time(path, key, stored, folder)


def run_once(name: str, model_name: str, mcfg: SummarizerConfig, cfg: SumTrainConfig, runs: Path, eval_sets: dict,
             bert: str, device, record_dir: Path) -> dict:
    """One run's record, made once: train (resuming from ``runs/name``), decode every evaluation set with beam 4,
    score every document; kept as ``record_dir/name.json`` under the settings it was made with. The test set's
    summaries are kept (the report shows some); the dev set's are reduced to ROUGE-L per source."""
    key = run_key(mcfg, cfg, bert, eval_sets)
    path = record_dir / f"{name}.json"
    folder = runs / name
    stored = finished_record(path, key, folder, stale=f"{path} was made with other settings: move it away to run "
                                                      f"{name} again, or run the sweep with the settings it records")
    if stored is not None:
        return stored
    start, resumed = time.time(), (folder / "checkpoints").is_dir()
    info = train(mcfg, cfg, folder, str(device))
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    model, tok, model_cfg = load_summarizer(folder, device)
    record = {"model": model_name, "seed": cfg.seed, "steps": info["step"], "chosen_step": info["best"].get("step"),
              "select_rougeL": info["best"].get("rougeL"),
              "step_seconds": sum(r["ms_per_step"] for r in rows) / 1e3,
              "parameters": sum(p.numel() for p in model.parameters()), "d_ff": model_cfg.d_ff,
              "curve": curve(folder), "expert_load": expert_load(folder) if mcfg.moe else [],
              "scores": {}, "items": {}, "preds": {}}
    for set_name, docs in eval_sets.items():
        preds = summarize(model, tok, model_cfg, docs, device, beam_size=BEAM)
        items = {m: [round(x, 4) for x in v] for m, v in summary_item_scores(preds, [d.summary for d in docs],
                                                                               bert).items()}
        record["items"][set_name] = items  # 4 decimals of a 0-100 score: the tables' means are of these
        record["scores"][set_name] = {m: statistics.mean(v) for m, v in items.items()}
        if set_name == list(eval_sets)[-1]:
            record["preds"][set_name] = preds
        else:
            record["per_source"] = per_source(docs, preds)
    record["wall_minutes"] = (time.time() - start) / 60
    record["wall_measured"] = "this process: the last sitting only (resumed)" if resumed else "this process"
    record_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps({"key": key, "entry": record}))
    return record






def summary_of(records: list[dict], sets: list[str]) -> dict:
    """A model's table entry: per set the seed means of every metric (and stds with several seeds)."""
    entry = {s: {m: statistics.mean(r["scores"][s][m] for r in records) for m in METRICS} for s in sets}
    if len(records) > 1:
        entry["std"] = {s: {m: statistics.stdev(r["scores"][s][m] for r in records) for m in METRICS} for s in sets}
    entry["runs"] = {f"{r['model']}_seed{r['seed']}": r["scores"] for r in records}
    entry["select_rougeL"] = statistics.mean(r["select_rougeL"] for r in records)
    return entry


def lead1_record(eval_sets: dict, bert: str, record_dir: Path) -> dict:
    """lead-1's summaries of the test set and per-document scores of every set, kept beside the runs' records
    (``lead1.json``): the comparisons can be derived again from the files alone."""
    key = {"bertscore_model": bert, "eval_sets": {s: [len(d), d[0].document[:80] if d else ""]
                                                  for s, d in eval_sets.items()}}
    path = record_dir / "lead1.json"
    stored = stored_result(path, key)
    if stored is not None:
        return stored
    preds = {s: [lead1(d.document) for d in docs] for s, docs in eval_sets.items()}
    record = {"items": {s: {m: [round(x, 4) for x in v] for m, v in summary_item_scores(
        preds[s], [d.summary for d in docs], bert).items()} for s, docs in eval_sets.items()},
        "preds": {s: preds[s] for s in list(eval_sets)[-1:]},
        "per_source": per_source(list(eval_sets.values())[0], preds[list(eval_sets)[0]])}
    record_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps({"key": key, "entry": record}))
    return record


def aggregate(records: dict[str, dict], lead: dict, plan: list[tuple[str, str, int]], eval_sets: dict, bert: str,
              budget: dict) -> dict:
    sets = list(eval_sets)
    models = {m: summary_of([r for r in records.values() if r["model"] == m], sets)
              for m in MODELS if any(r["model"] == m for r in records.values())}
    models["lead1"] = {s: {k: statistics.mean(v) for k, v in lead["items"][s].items()} for s in sets}
    ours = [m for m in OURS if m in models]
    best = max(ours, key=lambda m: models[m]["select_rougeL"]) if ours else None  # chosen on the selection split
    test = sets[-1]
    shown = example_indices(len(eval_sets[test]))
    first: dict[str, dict] = {}  # each model's run with its lowest seed
    for r in sorted(records.values(), key=lambda r: r["seed"]):
        first.setdefault(r["model"], r)
    examples = [{"document": eval_sets[test][i].document, "reference": eval_sets[test][i].summary,
                 "summaries": {"lead1": lead["preds"][test][i], **{m: first[m]["preds"][test][i] for m in MODELS
                                                                   if m in first}}} for i in shown]
    return {
        "budget": budget, "complete": len(records) == len(plan),
        "pending": [name for name, _, _ in plan if name not in records],
        "eval_sets": sets, "documents": {s: len(d) for s, d in eval_sets.items()}, "bertscore_model": bert,
        "models": models, "best_of_ours": best,
        "runs": {name: {**{k: r.get(k) for k in RUN_FIELDS}, "step_minutes": r["step_seconds"] / 60}
                 for name, r in records.items()},
        "curves": {m: r["curve"] for m, r in first.items()},
        "expert_load": {m: r["expert_load"] for m, r in first.items() if r["expert_load"]},
        "per_source": {**{m: r["per_source"] for m, r in first.items() if "per_source" in r},
                       "lead1": lead["per_source"]},
        "comparisons": comparisons(records, lead["items"], best, sets),
        "examples": {"indices": shown, "seed": EXAMPLE_SEED, "rows": examples},
    }


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
    p.add_argument("--spread-models", "--spread-variants", dest="spread", nargs="+", choices=tuple(MODELS),
                   default=["moe_top2", "dense"], help="models trained with every seed (the others: the first two)")
    p.add_argument("--only", nargs="+", default=None, metavar="RUN",
                   help="train and score only these runs (e.g. dense_seed0), to split the sweep over processes; "
                        "the tables still cover every finished run")
    p.add_argument("--eval-limit", type=int, default=0, help="documents per evaluation set (0 = all)")
    # any model or training field; not given = the --data preset's value (BENCH_PRESETS), else the config's
    add_dataclass_flags(p, SummarizerConfig, skip=("moe", "arch", "variant"))
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
    names = tuple(Path(paths[k]).stem if getattr(args, k) else name
                  for k, name in zip(("dev", "test"), DATA[args.data]["names"]))
    if names[0] == names[1]:
        raise UserError(f"the dev and test sets are both named '{names[0]}': give them different file names")
    plan = runs_to_train(args.seeds, args.spread)
    unknown = sorted(set(args.only or ()) - {name for name, _, _ in plan})
    if unknown:
        raise UserError(f"--only {' '.join(unknown)}: no such run in this sweep (runs: "
                        f"{', '.join(name for name, _, _ in plan)})")
    eval_sets = {name: load_documents(paths[split], local_hint=HINT).require(f"--{split}").records[
        : args.eval_limit or None] for split, name in zip(("dev", "test"), names)}
    bert = default_bertscore_model()
    steps = train_over.get("steps", SumTrainConfig.steps)
    cfg = SumTrainConfig(**{"eval_every": max(1, steps // 4), **train_over, "train": paths["train"],
                            "dev": paths["dev"]})
    record_dir = args.out / "summarization_runs"
    configs = {m: summarizer_config(size_name, variant, arch=arch, **model_over)
               for m, (variant, arch) in MODELS.items()}
    records = {}
    for name, model_name, seed in plan:
        run_cfg = replace(cfg, seed=seed)
        if args.only is None or name in args.only:
            records[name] = run_once(name, model_name, configs[model_name], run_cfg, args.runs, eval_sets, bert,
                                     device, record_dir)
            print(name, json.dumps({s: round(v["rougeL"], 2) for s, v in records[name]["scores"].items()}), flush=True)
        else:  # finished by another process (--only), or still to come
            key = run_key(configs[model_name], run_cfg, bert, eval_sets)
            stored = finished_record(record_dir / f"{name}.json", key, args.runs / name)
            if stored is not None:
                records[name] = stored
    dense = configs["dense"]
    budget = {"data": args.data, "train": paths["train"], "size": size_name, "seeds": args.seeds,
              "steps": cfg.steps, "batch_tokens": cfg.batch_tokens, "lr": cfg.lr, "warmup": cfg.warmup,
              "schedule": cfg.schedule, "dev_limit": cfg.dev_limit, "d_model": dense.d_model,
              "layers": f"{dense.encoder_layers}+{dense.decoder_layers}", "vocab_size": dense.vocab_size,
              "max_source_len": dense.max_source_len, "max_target_len": dense.max_target_len, "copy": dense.copy,
              "lowercase": dense.lowercase, "capacity_factor": configs["moe_top2"].moe.capacity_factor,
              "dense_parameters": parameter_count(build_model, dense),
              "peer_ffn": {m: configs[m].d_ff for m in PEERS}}
    lead = lead1_record(eval_sets, bert, record_dir)
    result = {**aggregate(records, lead, plan, eval_sets, bert, budget), "device": str(device),
              "device_info": device_info(device), "machine": platform.processor() or platform.machine()}
    result["baselines"] = run_baselines(eval_sets[names[1]], device, scorer=lambda preds, refs: {
        names[1]: summary_metrics(preds, refs, bert)})
    if args.data != "hub" and not args.test:
        result["transfer_note"] = (f"{names[1]} is a transfer evaluation: no model saw XSum training data (they "
                                   f"learned from {Path(paths['train']).parent.name}/), so its scores are not "
                                   "comparable with XSum-trained systems.")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summarization.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    write_summarization_report(result, args.out)
    print(json.dumps({m: {s: round(v[s]["rougeL"], 2) for s in eval_sets} for m, v in result["models"].items()},
                     indent=2))
    if result["pending"]:
        print(f"{len(result['pending'])} of {len(plan)} runs still to come: {', '.join(result['pending'])}")


if __name__ == "__main__":
    main()
