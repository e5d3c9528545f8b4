"""The training benchmark, under the evidence protocol: the three position schemes and the Hugging Face Marian
peer of identical size, each trained with several seeds, compute-matched (same data, tokenizer recipe, steps,
token budget, schedule, selection split and checkpoint choice: the peer trains in ``train.py``'s loop through
``ModelConfig(arch="marian")``), then decoded by the same search on both dev sets.

    python translation/bench_training.py          # 3 seeds (sinusoidal: 1), 10-13 runs of ~45 min on 1 CPU core
    python translation/bench_training.py --steps 20 --seeds 0 --out /tmp/mt-smoke      # smoke run

Every system trains under the shared recipe that ``bench_recipe.py`` chose on the selection split
(results/recipe.json; ``--recipe`` overrides it; an averaging recipe scores each run by the mean of its last
checkpoints, saved as the run's ``average_last<n>`` checkpoint). When that sweep kept architecture ablations of ours
(results/ablations.json; ``--ablations`` overrides), RoPE with all of them joins as a fifth system, named after
them (``rope_swiglu``, ...): issue #20's best configuration, compared with the peer and with plain RoPE. The
seeds are 1, 2, 3: the sweep decided on seed 0's runs, and the final comparison uses seeds that took no part.

A run is trained once (resumable after a kill) and scored once; a rerun reuses it. On a small CPU, several
single-threaded processes share the runs out (``--only``); the plain command then reads them all back:

    OMP_NUM_THREADS=1 python translation/bench_training.py --only rope sinusoidal &
    OMP_NUM_THREADS=1 python translation/bench_training.py --only relative_bias marian_peer &
    wait; python translation/bench_training.py

Each scored run is also kept with the results (results/training_runs/<system>_seed<n>.json: its settings, scores,
selection curve and dev translations, a few hundred kB), so a sweep of ten 50-80 min CPU runs can span sittings on
machines that do not keep the run folders: a run whose folder is gone is read back from there, under the same
settings, instead of trained again (delete its file to retrain it). The paired bootstrap needs only those
translations; the throughput timing trains fresh models, and the decoding study wants one checkpoint of the best
system (``best_checkpoint``: its first seed whose weights are on this machine).

Each comparison holds every seed's BLEU and chrF++ on each dev set, the means and standard deviations, the 95%
interval of the seed-averaged difference under sacrebleu's paired bootstrap over sentences, and the verdict
(win/loss only when the interval excludes 0 and the gap exceeds the larger seed std). ``best`` is our system
with the highest mean BLEU on the selection split among those trained with every seed (the one-seed baseline
cannot be a 3-seed headline); the dev sets are reported, never selected on. Training
throughput is measured side by side (best scheme vs the peer, the same batches, ``torch.utils.benchmark``,
interleaved rounds), with each model's peak memory and where each spends its step (``torch.profiler`` by
operator family). Writes results/training.{json,md} and training_*.png.
"""

from __future__ import annotations

import argparse
import json
import platform
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from shared_utils.batching import collate, token_batches
from shared_utils.checkpoint import metric_rows, store_result, stored_result
from shared_utils.cli import Parser, add_dataclass_flags, add_results_flags, pick, positive_int, results_folder
from shared_utils.errors import UserError, cli_main
from shared_utils.runtime import device_info, peak_memory, pick_device, reset_peak_memory, seed_everything
from shared_utils.stats import bootstrap_corpus, comparison
from shared_utils.timing import interleaved, ratio, time_by_op_family
from translation.config import ABLATIONS, BENCH_TRAIN, PRESETS, RECIPES, TrainConfig, model_config, recipe_fields
from translation.data import encode_pairs, load_parallel
from translation.decoding import Strategy
from translation.inference import load_translator, translate
from translation.model import build_model
from translation.reports import write_training_report
from translation.study import (
    LOCAL,
    LOCAL_DEV,
    SYSTEMS,
    greedy_select,
    matmul_ceiling,
    parameters,
    score,
    scored_model,
    settings,
    stale_run,
)
from translation.training import fresh_tokenizer, loss_fn, optimizer, select_pairs_from, train, training_loss

RESULTS = Path(__file__).resolve().parent / "results"
ONE_SEED = ("sinusoidal",)  # the baseline scheme keeps one seed (the protocol allows it)


def decisions(folder: Path, recipe: str | None, ablations: list[str] | None) -> tuple[str, list[str]]:
    """Issue #20's shared recipe and kept ablations: the flags when given, else what bench_recipe.py chose on the
    selection split (``folder``/recipe.json, ``folder``/ablations.json)."""

    def chosen(name: str, key: str, flag: str):
        path = folder / name
        if not path.is_file():
            raise UserError(f"{path} not found: run `make translation-recipe` first (it decides on the selection "
                            f"split), or pass {flag}")
        return json.loads(path.read_text(encoding="utf-8"))[key]

    recipe = chosen("recipe.json", "chosen", "--recipe base") if recipe is None else recipe
    kept = chosen("ablations.json", "kept", "--ablations (none)") if ablations is None else ablations
    return recipe, list(dict.fromkeys(kept))  # a name given twice is one ablation


def systems_for(kept: list[str]) -> dict[str, dict]:
    """The systems compared: the three position schemes, the peer and, when ablations were kept, our best
    configuration: RoPE with every kept ablation (named after them)."""
    if not kept:
        return dict(SYSTEMS)
    best = {**SYSTEMS["rope"], **{k: v for a in kept for k, v in ABLATIONS[a].items()}}
    return {"_".join(["rope", *kept]): best, **SYSTEMS}


def runs_to_train(systems: list[str], seeds: list[int]) -> list[tuple[str, int]]:
    """(system, seed), seed-major, so a sweep stopped early has every system's first seeds."""
    return [(name, s) for s in seeds for name in systems if s == seeds[0] or name not in ONE_SEED]


def best_system(summaries: dict) -> str:
    """Our best configuration: the highest mean selection-split BLEU (never the dev sets it is reported on) among
    our systems trained with every seed. The one-seed baseline (``ONE_SEED``) is compared, but it cannot be the
    best: issue #20's headline is our best configuration against the peer with 3 seeds each."""
    candidates = [n for n in summaries if n != "marian_peer" and n not in ONE_SEED]
    return max(candidates, key=lambda n: summaries[n]["select_bleu"]["mean"])


def run_system(name: str, fields: dict, seed: int, preset: str, cfg: TrainConfig, runs: Path, dev_sets: dict,
               device, strategy: Strategy, select: list, kept: Path, average: int = 1) -> dict:
    """Train (or resume) one system with one seed, decode the dev sets with its best checkpoint (chosen on the
    selection split) or, under an averaging recipe, with the mean of its last ``average`` checkpoints (saved as
    the run's ``average_last<n>`` checkpoint and scored on the ``select`` pairs), and keep the hypotheses: stored
    in the run folder and in ``kept`` (the results' copy), and reused by a rerun from either."""
    run = runs / f"{name}_seed{seed}"
    copy = kept / f"{run.name}.json"
    # a changed model or preset makes train.py refuse the resume; a changed schedule it would accept
    key = {"train": settings(replace(cfg, seed=seed)), "strategy": asdict(strategy), "average_last": average}
    stored = stored_result(run / "bench_entry.json", key, stale=stale_run(run))
    if stored is None and not run.exists():
        # scored in an earlier sitting whose run folders are gone; a copy under other settings is trained afresh
        stored = stored_result(copy, key)
    if stored is not None:
        store_result(copy, key, stored)
        return stored
    summary = train(model_config(preset, **fields), replace(cfg, seed=seed), run, str(device))
    model, tok, mcfg, checkpoint = scored_model(run, average, device)
    chosen = summary["best"]
    if average > 1:
        chosen = {**greedy_select(model, tok, mcfg, select, device)[0], "step": f"mean of the last {average}"}
    hyps = {n: translate(model, tok, mcfg, [p.src for p in rows], device, strategy) for n, rows in dev_sets.items()}
    entry = {"select": chosen, "checkpoint": str(checkpoint), "target_tokens_per_s": summary["target_tokens_per_s"],
             "parameters": parameters(model), "hyps": hyps,
             "scores": {n: score(h, [p.tgt for p in dev_sets[n]]) for n, h in hyps.items()},
             "curve": [row for row in metric_rows(run) if any(k.endswith("/bleu") for k in row)]}
    store_result(run / "bench_entry.json", key, entry)
    store_result(copy, key, entry)
    return entry


def compare(a: str, b: str, entries: dict, dev_sets: dict) -> dict:
    """The protocol's entry for system ``a`` vs ``b`` on every dev set, for BLEU and chrF++."""
    from sacrebleu.metrics import BLEU, CHRF

    seeds = {s: sorted(seed for (name, seed) in entries if name == s) for s in (a, b)}
    out = {}
    for dev, rows in dev_sets.items():
        refs = [p.tgt for p in rows]
        out[dev] = {}
        for metric_name, metric in (("bleu", BLEU()), ("chrf", CHRF(word_order=2))):
            hyps = {s: [entries[(s, seed)]["hyps"][dev] for seed in seeds[s]] for s in (a, b)}
            samples_a, samples_b = bootstrap_corpus(metric, hyps[a], hyps[b], refs)
            per_seed = {s: [entries[(s, seed)]["scores"][dev][metric_name] for seed in seeds[s]] for s in (a, b)}
            out[dev][metric_name] = comparison(a, per_seed[a], b, per_seed[b], samples_a - samples_b, seeds)
    return out


def training_steps(model: torch.nn.Module, fixed: list, cfg: TrainConfig, *, padded: bool = False):
    """One call = one step of ``train.py``'s loss and optimizer on each of the ``fixed`` (src, tgt) batches.
    ``padded``: our model's padded reference step (every position through every layer, ``loss_fn``) instead of
    the padding-free one ``train.py`` takes; the peer (``arch=marian``) always runs padded, as HF's model does."""
    opt = optimizer(model, cfg)

    def loss(src, tgt):
        if padded:
            return loss_fn(model(src, tgt[:, :-1]), tgt[:, 1:], cfg.label_smoothing)
        return training_loss(model, src, tgt, cfg.label_smoothing)

    def step():
        for src, tgt in fixed:
            loss(src, tgt).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

    return step


def peak_training_memory(preset: str, fields: dict, fixed: list, cfg: TrainConfig, device: str) -> dict:
    """Peak memory of two training passes over ``fixed``, measured in a fresh process (spawned), so that one
    model's reading never includes another's: CUDA's max allocated on a GPU, the peak RSS on the CPU. Every
    process imports the same modules first (transformers' Marian included, which only the peer needs), so
    the imports weigh the same on both sides; ``baseline_mb`` is the RSS after them, before any model."""
    import transformers.models.marian.modeling_marian  # noqa: F401  (the same imports in every process)

    baseline = peak_memory(device)["peak_memory_mb"]
    seed_everything(0)
    model = build_model(model_config(preset, **fields)).to(device).train()
    reset_peak_memory(device)
    step = training_steps(model, [(s.to(device), t.to(device)) for s, t in fixed], cfg)
    step()
    step()
    return {**peak_memory(device), "baseline_mb": baseline}


def throughput(best: str, systems: dict, preset: str, vocab_size: int, cfg: TrainConfig, data, device, repeats: int,
               batches: int = 4) -> dict:
    """Training steps timed side by side on the same ``batches`` batches (forward, backward, AdamW step;
    interleaved rounds of ``torch.utils.benchmark``): the best scheme as ``train.py`` runs it (padding-free),
    the same model on the padded reference step, and the peer (padded, as HF's model is); each one's peak
    memory. Both ratios against the peer are reported: the padded one is like for like, the padding-free one
    is what our loop gains by skipping pad positions."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    fixed = [collate(data, idx, device) for idx in token_batches(data, cfg.batch_tokens, cfg.seed, 0)[:batches]]
    tokens = sum(int((tgt[:, 1:] != 0).sum()) for _, tgt in fixed)
    fields = {name: {"vocab_size": vocab_size, **systems[name]} for name in (best, "marian_peer")}
    steps = {}
    for name, model_name, padded in ((best, best, False), (f"{best}_padded", best, True),
                                     ("marian_peer", "marian_peer", False)):
        seed_everything(cfg.seed)
        model = build_model(model_config(preset, **fields[model_name])).to(device).train()
        steps[name] = training_steps(model, fixed, cfg, padded=padded)
    timings = interleaved(steps, repeats=repeats)
    profiled = {name: time_by_op_family(step, runs=1) for name, step in steps.items()}
    memory = {}
    for name in fields:
        with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
            cpu_batches = [(src.cpu(), tgt.cpu()) for src, tgt in fixed]
            memory[name] = pool.submit(peak_training_memory, preset, fields[name], cpu_batches, cfg,
                                       str(device)).result()
    per_model = {name: {**t.as_dict(), "target_tokens_per_s": tokens / (t.median_ms / 1e3),
                        **memory.get(name, {})} for name, t in timings.items()}
    return {"scheme": best, "batches": batches, "target_tokens": tokens, "models": per_model,
            "time_by_op_family": profiled,
            # the peer's step time over our padding-free step's matmul + attention time: what remains when every
            # other cost is cut to nothing. The peer multiplies pad positions too (more matmul time), so part of
            # the gap is work ours skips, not a faster implementation of the same work.
            "ceiling_vs_marian": matmul_ceiling(timings["marian_peer"], profiled[best]),
            "throughput_ratio_vs_marian": ratio(timings["marian_peer"], timings[best]),
            "throughput_ratio_padded_vs_marian": ratio(timings["marian_peer"], timings[f"{best}_padded"])}




def summarise(name: str, entries: dict, dev_sets: dict) -> dict:
    runs = {seed: e for (n, seed), e in entries.items() if n == name}

    def stat(values: list[float | None]) -> dict:
        known = [v for v in values if v is not None]  # None: not measured (a run resumed at its end)
        return {"mean": float(np.mean(known)) if known else None,
                "std": float(np.std(known, ddof=1)) if len(known) > 1 else 0.0 if known else None, "per_seed": values}

    out = {"seeds": sorted(runs), "parameters": next(iter(runs.values()))["parameters"],
           "select_bleu": stat([runs[s]["select"]["bleu"] for s in sorted(runs)]),
           "checkpoint_step": [runs[s]["select"]["step"] for s in sorted(runs)],  # each run's chosen checkpoint
           "target_tokens_per_s_in_training": stat([runs[s]["target_tokens_per_s"] for s in sorted(runs)])}
    for d in dev_sets:
        out[d] = {m: stat([runs[s]["scores"][d][m] for s in sorted(runs)]) for m in ("bleu", "chrf")}
    return out


def remeasure_throughput(args, systems: dict, cfg: TrainConfig, train_pairs: list, device) -> None:
    """``--throughput-only``: the side-by-side timing and memory of a finished benchmark, measured again."""
    path = args.out / "training.json"
    if not path.is_file():
        raise UserError(f"--throughput-only: {path} not found: run the benchmark first")
    result = json.loads(path.read_text(encoding="utf-8"))
    best = result["best_scheme"]
    tok, mcfg = fresh_tokenizer(train_pairs, model_config(args.preset, **systems[best]))
    tp = throughput(best, systems, args.preset, mcfg.vocab_size, cfg, encode_pairs(tok, train_pairs, mcfg.max_len),
                    device, args.repeats)
    result.update(throughput=tp, throughput_ratio_vs_marian=tp["throughput_ratio_vs_marian"],
                  throughput_ratio_padded_vs_marian=tp["throughput_ratio_padded_vs_marian"],
                  peak_memory=peak_memory_summary(tp), throughput_device_info=device_info(device))
    path.write_text(json.dumps(result, indent=2), encoding="utf-8")
    write_training_report(result, args.out)
    print(json.dumps({k: result[k] for k in ("throughput_ratio_vs_marian", "throughput_ratio_padded_vs_marian")},
                     indent=2))


def peak_memory_summary(tp: dict) -> dict:
    return {n: {k: m[k] for k in ("peak_memory_mb", "memory_kind", "baseline_mb") if k in m}
            for n, m in tp["models"].items() if "peak_memory_mb" in m}


@cli_main
def main(argv: list[str] | None = None) -> None:
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", default=f"{LOCAL}/train.fi-en.tsv")
    p.add_argument("--dev", nargs="+", default=LOCAL_DEV)
    p.add_argument("--preset", default="small", choices=tuple(PRESETS))
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3],
                   help="not 0: seed 0's runs made the recipe sweep's decisions, so the final comparison uses seeds "
                        "that took no part in one")
    p.add_argument("--only", nargs="+", default=None,
                   help="train and score just these systems (e.g. in parallel processes), no report")
    p.add_argument("--throughput-only", action="store_true",
                   help="time the training steps again (and their peak memory) for the training.json in --out, "
                        "keeping its runs and comparisons; no training")
    p.add_argument("--recipe", choices=tuple(RECIPES), default=None,
                   help="the shared training recipe (default: the one results/recipe.json chose)")
    p.add_argument("--ablations", nargs="*", choices=tuple(a for a in ABLATIONS if a != "baseline"), default=None,
                   help="ablations of RoPE to add as our best configuration (default: those results/ablations.json "
                        "kept; none: the flag alone)")
    p.add_argument("--beam-size", type=positive_int, default=1, help="dev decoding: 1 = greedy")
    p.add_argument("--repeats", type=positive_int, default=7, help="interleaved timing rounds (>= 5 for a verdict)")
    p.add_argument("--runs", type=Path, default=Path("runs/mt-bench"), help="where the runs' checkpoints go")
    add_results_flags(p, RESULTS, "mt-bench-results")
    p.add_argument("--device", default="auto")
    # any training field (--steps, --lr, --warmup, ...): not given = BENCH_TRAIN's, else TrainConfig's
    add_dataclass_flags(p, TrainConfig, skip=("train", "dev", "seed", "time_budget_min"))
    args = p.parse_args(argv)
    args.out = results_folder(args, RESULTS, "mt-bench-results")
    recipe, kept = decisions(RESULTS, args.recipe, args.ablations)
    systems = systems_for(kept)
    unknown = sorted(set(args.only or ()) - set(systems))
    if unknown:
        raise UserError(f"--only: unknown system {', '.join(unknown)} (systems: {', '.join(systems)})")
    device = pick_device(args.device)
    fields, average = recipe_fields(recipe)
    cfg = TrainConfig(**{**BENCH_TRAIN, **fields, "keep_checkpoints": max(TrainConfig.keep_checkpoints, average),
                         **pick(vars(args), TrainConfig), "train": args.train, "dev": args.dev})
    strategy = Strategy("greedy") if args.beam_size == 1 else Strategy("beam", beam_size=args.beam_size)
    dev_sets = {Path(d).name.removesuffix(".tsv").removesuffix(".fi-en"): load_parallel(d).records for d in args.dev}
    train_pairs, select = select_pairs_from(load_parallel(args.train).records, cfg)
    if args.throughput_only:
        return remeasure_throughput(args, systems, cfg, train_pairs, device)
    if average > 1 and not select:
        raise UserError(f"the recipe '{recipe}' scores its averaged checkpoints on the selection split: "
                        "--select-size must be > 0")
    entries = {(name, seed): run_system(name, systems[name], seed, args.preset, cfg, args.runs, dev_sets, device,
                                        strategy, select, args.out / "training_runs", average)
               for name, seed in runs_to_train(args.only or list(systems), args.seeds)}
    if args.only:
        return
    summaries = {name: summarise(name, entries, dev_sets) for name in systems}
    best = best_system(summaries)
    pairs = [("rope", "marian_peer"), ("relative_bias", "marian_peer"), ("sinusoidal", "marian_peer"),
             ("rope", "relative_bias"), ("rope", "sinusoidal"), ("relative_bias", "sinusoidal")]
    ablated = [n for n in systems if n not in SYSTEMS]  # what the kept ablations add, against the peer and RoPE
    comparisons = {f"{a}_vs_{b}": compare(a, b, entries, dev_sets)
                   for a, b in [(n, other) for n in ablated for other in ("marian_peer", "rope")] + pairs}
    comparisons["best_vs_marian"] = comparisons[f"{best}_vs_marian_peer"]
    # the weights the decoding study reads: the best system's first seed that this machine trained
    here = [entries[(best, s)]["checkpoint"] for s in args.seeds
            if (best, s) in entries and Path(entries[(best, s)]["checkpoint"]).exists()]
    checkpoint = here[0] if here else None
    if checkpoint is None:  # every run of the best system was trained in an earlier sitting: the same tokenizer again
        tok, mcfg = fresh_tokenizer(train_pairs, model_config(args.preset, **systems[best]))
    else:
        _, tok, mcfg = load_translator(checkpoint, device)
    data = encode_pairs(tok, train_pairs, mcfg.max_len)
    tp = throughput(best, systems, args.preset, mcfg.vocab_size, cfg, data, device, args.repeats)
    result = {"steps": cfg.steps, "batch_tokens": cfg.batch_tokens, "select_size": len(select),
              "recipe": recipe, "average_last": average, "ablations_kept": kept, "seeds": args.seeds,
              "strategy": "greedy" if args.beam_size == 1 else f"beam {args.beam_size}",
              "train_config": {k: v for k, v in asdict(cfg).items() if k not in ("train", "dev")},
              "device_info": device_info(device), "machine": platform.processor() or platform.machine(),
              "dev_sets": list(dev_sets), "best_scheme": best,
              "best_checkpoint": checkpoint, "systems": summaries,
              "comparisons": comparisons,
              "throughput": tp, "throughput_ratio_vs_marian": tp["throughput_ratio_vs_marian"],
              "throughput_ratio_padded_vs_marian": tp["throughput_ratio_padded_vs_marian"],
              "peak_memory": peak_memory_summary(tp),
              "model_config": asdict(mcfg),
              "curves": {f"{n}_seed{s}": e["curve"] for (n, s), e in entries.items()}}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "training.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    write_training_report(result, args.out)
    print(json.dumps({"best_vs_marian": {d: {m: v["verdict"] for m, v in c.items()}
                                         for d, c in comparisons["best_vs_marian"].items()},
                      "throughput_ratio_vs_marian": tp["throughput_ratio_vs_marian"]}, indent=2))


if __name__ == "__main__":
    main()
