"""The recipe sweep and the architecture ablations of issue #20, decided on the selection split alone.

    python translation/bench_recipe.py --stage recipe       # 6 recipes x (ours, peer): 8 runs, ~6 h of 1 CPU core
    python translation/bench_recipe.py --stage ablations    # 4 architectures of ours (+ the baseline, already trained)
    python translation/bench_recipe.py --stage recipe --only-runs rope   # one process's share (then rerun plainly)
    python translation/bench_recipe.py --stage ablations --recipe lr1e-3_warmup800 --only-runs swiglu  # before
                                                                          # the recipe stage has chosen, in parallel

**Recipe** (what both models get): every recipe in :data:`RECIPES` trains our RoPE model and the Marian peer (seed
0, the benchmark's budget); the ``_average3`` recipes score their base recipe's runs as the mean of their last 3
checkpoints (checkpoint averaging), without training. The shared recipe chosen is the one with the highest mean
selection-split BLEU over the two models. **Ablations** (ours alone, at the peer's parameter count within 3%): each
entry of :data:`ABLATIONS` changes one config field of the RoPE model under the chosen recipe; it is kept only when
the paired bootstrap on the selection split (its greedy translations against the baseline's) gives a ``win``. The
baseline is the recipe stage's RoPE run under the chosen recipe, read back, not trained again.

The dev sets are never decoded here: every decision is made on the selection split carved from the training
data. Each run is trained once (resumable) and scored once. Writes results/recipe.json and
results/ablations.json, every entry tried, kept or not, with its parameter count and its selection BLEU at each
checkpoint (tables in the .md files, plots in recipe_curves.png and ablations_curves.png).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from shared_utils.checkpoint import metric_rows, store_result, stored_result
from shared_utils.cli import Parser, add_dataclass_flags, add_results_flags, pick, results_folder
from shared_utils.errors import UserError, cli_main
from shared_utils.runtime import device_info, pick_device
from shared_utils.stats import bootstrap_corpus, comparison
from translation.config import ABLATIONS, BENCH_TRAIN, PRESETS, RECIPES, TrainConfig, model_config, recipe_fields
from translation.data import load_parallel
from translation.reports import plot_recipe_curves, recipe_report
from translation.study import (
    LOCAL,
    RECIPE_SYSTEMS,
    SYSTEMS,
    greedy_select,
    parameters,
    scored_model,
    settings,
    stale_run,
)
from translation.training import select_pairs_from, train

RESULTS = Path(__file__).resolve().parent / "results"

KEEP = 5  # checkpoints every run keeps (steps 400..2000), so any of them can be averaged


def selection_run(run: Path, model_fields: dict, cfg: TrainConfig, preset: str, select: list, device,
                  average_last: int = 1) -> dict:
    """Train one run (or resume it), then translate the selection split greedily with its best checkpoint, or
    with the mean of its last ``average_last`` checkpoints."""
    done = run / ("recipe_entry.json" if average_last == 1 else f"recipe_entry_average{average_last}.json")
    key = {"model": model_fields, "train": settings(cfg)}  # a changed model or preset: train.py refuses to resume
    stored = stored_result(done, key, stale=stale_run(run))
    if stored is not None:
        return stored
    summary = train(model_config(preset, **model_fields), cfg, run, str(device))
    model, tok, mcfg, _ = scored_model(run, average_last, device)
    scores, hyps = greedy_select(model, tok, mcfg, select, device)
    entry = {"select": scores,
             "checkpoint": summary["best"]["step"] if average_last == 1 else f"mean of the last {average_last}",
             "parameters": parameters(model), "hyps": hyps}
    store_result(done, key, entry)
    return entry


def paired(a: dict, b: dict, name_a: str, name_b: str, refs: list[str]) -> dict:
    """One seed each: sacrebleu's paired bootstrap of BLEU on the selection split. Two independently trained
    runs with one seed each can claim no more than a tie (``shared_utils.stats``): the entry shows the interval,
    and a kept ablation needs more seeds."""
    from sacrebleu.metrics import BLEU

    sa, sb = bootstrap_corpus(BLEU(), [a["hyps"]], [b["hyps"]], refs)
    return comparison(name_a, [a["select"]["bleu"]], name_b, [b["select"]["bleu"]], sa - sb, [0])


def selection_curve(run: Path) -> list[dict]:
    """The run's selection-split BLEU / chrF++ at each of its checkpoints, as train.py logged them: whether a run
    was still improving when its budget ended says how far its final score is from what the setting can do."""
    return [{"step": r["step"], "bleu": r["select/bleu"], "chrf": r["select/chrf"]}
            for r in metric_rows(run) if "select/bleu" in r]




def drop_hyps(entries: dict) -> dict:
    return {k: {f: v for f, v in e.items() if f != "hyps"} for k, e in entries.items()}








@cli_main
def main(argv: list[str] | None = None) -> None:
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stage", choices=("recipe", "ablations"), required=True)
    p.add_argument("--recipe", choices=tuple(RECIPES), default=None,
                   help="with --stage ablations --only-runs: train those runs under this recipe, before the recipe "
                        "stage has chosen (the full stage always takes the one results/recipe.json chose)")
    p.add_argument("--train", default=f"{LOCAL}/train.fi-en.tsv")
    p.add_argument("--preset", default="small", choices=tuple(PRESETS))
    p.add_argument("--only-runs", nargs="+", default=None,
                   help="train just the runs whose name contains one of these words (parallel processes), no report")
    p.add_argument("--runs", type=Path, default=Path("runs/mt-recipe"))
    add_results_flags(p, RESULTS, "mt-recipe-results")
    p.add_argument("--device", default="auto")
    # any training field the grid leaves alone (--steps, --batch-tokens, ...): not given = BENCH_TRAIN's
    add_dataclass_flags(p, TrainConfig, skip=("train", "dev", "seed", "time_budget_min"))
    args = p.parse_args(argv)
    args.out = results_folder(args, RESULTS, "mt-recipe-results")
    if args.recipe and (args.stage == "recipe" or not args.only_runs):
        raise UserError("--recipe goes with --stage ablations --only-runs: the recipe stage tries every recipe, and "
                        "the ablations' report takes the one results/recipe.json chose")
    device = pick_device(args.device)
    base = TrainConfig(**{**BENCH_TRAIN, "keep_checkpoints": KEEP, **pick(vars(args), TrainConfig),
                          "train": args.train, "dev": [args.train]})  # dev: logged in training, never decided on
    _, select = select_pairs_from(load_parallel(args.train).records, base)
    if not select:
        raise UserError("the sweep decides on the selection split: --select-size must be > 0")
    refs = [q.tgt for q in select]

    def wanted(name: str) -> bool:
        return args.only_runs is None or any(word in name for word in args.only_runs)

    def recipe(name: str) -> tuple[TrainConfig, int]:
        """A recipe's training config (averaging recipes train as their base) and how many checkpoints to average."""
        fields, average = recipe_fields(name)
        return replace(base, **fields), average

    chosen = None
    if args.stage == "recipe":
        runs = {f"{r}_{s}": (SYSTEMS[s], *recipe(r)) for r in RECIPES for s in RECIPE_SYSTEMS}
    else:
        recipe_file = args.out / "recipe.json"  # the choice, and the peer's parameter count for the report
        recipe_result = json.loads(recipe_file.read_text(encoding="utf-8")) if recipe_file.is_file() else None
        if args.recipe is None and recipe_result is None:
            raise UserError(f"{recipe_file} not found: run --stage recipe first (or, to train ablation runs before "
                            "it has chosen, pass --recipe with --only-runs)")
        chosen = args.recipe or recipe_result["chosen"]
        runs = {f"ablation_{a}": ({**SYSTEMS["rope"], **fields}, *recipe(chosen)) for a, fields in ABLATIONS.items()}

    def folder(name: str, average: int) -> Path:
        """A run's folder. Runs that are the same training are trained once: an averaging recipe's are its base
        recipe's, and the ablations' baseline (RoPE under the chosen recipe, seed 0) is the recipe stage's run."""
        if name == "ablation_baseline":
            name = f"{chosen}_rope"
        return args.runs / (name if average == 1 else name.replace(f"_average{average}", ""))

    entries = {}
    for name, (fields, cfg, average) in runs.items():
        if wanted(name):
            run = folder(name, average)
            entries[name] = {**selection_run(run, fields, cfg, args.preset, select, device, average),
                             "curve": selection_curve(run)}
    if args.only_runs:
        return
    common = {"preset": args.preset, "steps": base.steps, "select_size": len(select), "seed": base.seed,
              "device_info": device_info(device), "decoding": "greedy",
              "decided_on": "the selection split only (dev sets never decoded)"}
    if args.stage == "recipe":
        grid = {r: {"fields": fields, **{s: drop_hyps(entries)[f"{r}_{s}"] for s in RECIPE_SYSTEMS}}
                for r, fields in RECIPES.items()}
        for row in grid.values():
            row["mean_select_bleu"] = sum(row[s]["select"]["bleu"] for s in RECIPE_SYSTEMS) / len(RECIPE_SYSTEMS)
        chosen = max(grid, key=lambda r: grid[r]["mean_select_bleu"])
        result = {**common, "rule": "the recipe with the highest mean selection BLEU over ours (rope) and the peer",
                  "grid": grid, "chosen": chosen}
        name = "recipe.json"
    else:
        base_entry = entries["ablation_baseline"]
        table = {}
        for a, fields in ABLATIONS.items():
            e = drop_hyps(entries)[f"ablation_{a}"]
            table[a] = {"fields": fields, **e}
            if a != "baseline":
                table[a]["vs_baseline"] = paired(entries[f"ablation_{a}"], base_entry, a, "baseline", refs)
        kept = [a for a, e in table.items() if a != "baseline" and e["vs_baseline"]["verdict"] == "win"]
        peer = recipe_result["grid"][chosen]["marian_peer"]["parameters"]  # the full stage: --recipe is refused
        for e in table.values():
            e["parameters_vs_peer"] = e["parameters"] / peer  # the comparison's rule: within 1 +- 0.03
        result = {**common, "recipe": chosen, "rule": "kept when the selection-split comparison says win "
                  "(one seed each: at most a tie, so nothing is kept on one seed)",
                  "peer_parameters": peer, "ablations": table, "kept": kept}
        name = "ablations.json"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / name).write_text(json.dumps(result, indent=2), encoding="utf-8")
    (args.out / name.replace(".json", ".md")).write_text("\n".join(recipe_report(result)) + "\n", encoding="utf-8")
    plot_recipe_curves(result, args.out / name.replace(".json", "_curves.png"))
    print(json.dumps({k: result[k] for k in ("chosen", "kept") if k in result}))


if __name__ == "__main__":
    main()
