"""The recipe sweep and the ablations at toy size: every decision made on the selection split."""

import json
from pathlib import Path

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def test_the_recipe_sweep_and_the_ablations_decide_on_the_selection_split(tmp_path):
    from translation.bench_recipe import ABLATIONS, RECIPES
    from translation.bench_recipe import main as recipe_main

    argv = ["--steps", "3", "--eval-every", "1", "--select-size", "15", "--preset", "tiny", "--train",
            str(SAMPLES / "train.fi-en.tsv"),
            "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--device", "cpu"]
    recipe_main(["--stage", "recipe", *argv])
    recipe = json.loads((tmp_path / "out" / "recipe.json").read_text())
    assert set(recipe["grid"]) == set(RECIPES) and recipe["select_size"] == 15
    assert recipe["chosen"] == max(recipe["grid"], key=lambda r: recipe["grid"][r]["mean_select_bleu"])
    assert all(set(row) >= {"rope", "marian_peer", "fields"} for row in recipe["grid"].values())
    averaged = recipe["grid"]["base_average3"]["rope"]
    assert averaged["checkpoint"] == "mean of the last 3" and not (tmp_path / "runs" / "base_average3_rope").exists()
    recipe_main(["--stage", "ablations", *argv])
    ablations = json.loads((tmp_path / "out" / "ablations.json").read_text())
    assert set(ablations["ablations"]) == set(ABLATIONS) and ablations["recipe"] == recipe["chosen"]
    assert not (tmp_path / "runs" / "ablation_baseline").exists()  # the recipe stage's run under the chosen recipe
    baseline, chosen_rope = ablations["ablations"]["baseline"], recipe["grid"][recipe["chosen"]]["rope"]
    assert {k: baseline[k] for k in chosen_rope} == chosen_rope
    verdicts = {a: e["vs_baseline"]["verdict"] for a, e in ablations["ablations"].items() if a != "baseline"}
    assert ablations["kept"] == [a for a, v in verdicts.items() if v == "win"]
    assert all(e["parameters"] > 0 and "hyps" not in e for e in ablations["ablations"].values())
    peer = recipe["grid"][recipe["chosen"]]["marian_peer"]["parameters"]
    swiglu = ablations["ablations"]["swiglu"]
    assert swiglu["parameters_vs_peer"] == swiglu["parameters"] / peer
    # every trained run's selection BLEU at each checkpoint, as train.py logged it (steps 1, 2, 3 here)
    logged = [json.loads(line) for line in (tmp_path / "runs" / "base_rope" / "metrics.jsonl").read_text().splitlines()]
    assert recipe["grid"]["base"]["rope"]["curve"] == [
        {"step": r["step"], "bleu": r["select/bleu"], "chrf": r["select/chrf"]} for r in logged if "select/bleu" in r]
    assert [p["step"] for p in recipe["grid"]["base"]["rope"]["curve"]] == [1, 2, 3]
    # the score reported is the curve's point at the checkpoint chosen (the same decoding of the same split)
    assert {p["step"]: p["bleu"] for p in swiglu["curve"]}[swiglu["checkpoint"]] == swiglu["select"]["bleu"]
    trained = [r for r in RECIPES if "average_last" not in RECIPES[r]]
    recipe_md = (tmp_path / "out" / "recipe.md").read_text()
    assert f"Chosen: **{recipe['chosen']}**." in recipe_md
    assert recipe_md.count("\n| ") == (len(RECIPES) + 2) + (2 * len(trained) + 2)  # the grid, then the curves
    assert f"| base (rope) | {recipe['grid']['base']['rope']['curve'][0]['bleu']:.2f} |" in recipe_md
    ablations_md = (tmp_path / "out" / "ablations.md").read_text()
    assert ablations_md.count("\n| ") == 2 * (len(ABLATIONS) + 2) and "| baseline | `{}` |" in ablations_md
    assert all((tmp_path / "out" / f"{stem}_curves.png").stat().st_size > 0 for stem in ("recipe", "ablations"))


def test_ablation_runs_may_start_under_a_named_recipe_before_the_sweep_chose(tmp_path, capsys):
    from shared_utils.testing import assert_one_line_error, run_cli
    from translation.bench_recipe import main as recipe_main

    argv = ["--stage", "ablations", "--recipe", "lr1e-3_warmup800", "--steps", "2", "--eval-every", "2",
            "--select-size", "10", "--preset", "tiny", "--train", str(SAMPLES / "train.fi-en.tsv"),
            "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--device", "cpu"]
    assert_one_line_error(run_cli(recipe_main, argv, capsys), "--recipe goes with --stage ablations --only-runs")
    no_recipe = [a for a in argv if a not in ("--recipe", "lr1e-3_warmup800")]
    assert_one_line_error(run_cli(recipe_main, [*no_recipe, "--only-runs", "no_bias"], capsys),
                          f"{tmp_path / 'out' / 'recipe.json'} not found: run --stage recipe first (or, to train "
                          "ablation runs before it has chosen, pass --recipe with --only-runs)")
    assert run_cli(recipe_main, [*argv, "--only-runs", "no_bias"], capsys)[0] == 0
    trained = json.loads((tmp_path / "runs" / "ablation_no_bias" / "config.json").read_text())
    assert (trained["train"]["lr"], trained["train"]["warmup"], trained["model"]["bias"]) == (1e-3, 800, False)
    assert (tmp_path / "runs" / "ablation_no_bias" / "recipe_entry.json").is_file()
    assert not (tmp_path / "out").exists() and not (tmp_path / "runs" / "ablation_swiglu").exists()
