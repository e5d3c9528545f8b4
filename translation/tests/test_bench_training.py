"""The training benchmark end to end at toy size: seeds, paired comparisons, interleaved throughput."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from shared_utils.stats import verdict
from translation.bench_training import best_system, main, runs_to_train

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def test_every_system_gets_every_seed_but_the_baseline_one():
    assert runs_to_train(["rope", "sinusoidal", "marian_peer"], [0, 1, 2]) == [
        ("rope", 0), ("sinusoidal", 0), ("marian_peer", 0), ("rope", 1), ("marian_peer", 1), ("rope", 2),
        ("marian_peer", 2)]


def test_the_best_system_is_chosen_on_the_selection_split_among_the_systems_with_every_seed():
    def summary(select: float, tatoeba: float) -> dict:
        return {"select_bleu": {"mean": select}, "dev.tatoeba": {"bleu": {"mean": tatoeba}}}

    summaries = {"rope": summary(15.0, 20.0), "relative_bias": summary(15.5, 19.0),
                 "sinusoidal": summary(17.0, 21.0), "marian_peer": summary(18.0, 22.0)}
    # not the peer, not the one-seed baseline (highest here), not the best on dev: the best 3-seed selection score
    assert best_system(summaries) == "relative_bias"


def test_the_benchmark_writes_seeds_comparisons_and_a_timed_ratio(tmp_path):
    dev = tmp_path / "dev.tatoeba.fi-en.tsv"
    dev.write_text("".join((SAMPLES / "dev.fi-en.tsv").read_text(encoding="utf-8").splitlines(True)[:30]),
                   encoding="utf-8")
    argv = ["--steps", "3", "--eval-every", "1", "--seeds", "0", "1", "--select-size", "20", "--dev-limit", "5",
            "--repeats", "2", "--batch-tokens", "600", "--recipe", "lr1e-3_warmup800_average3",
            "--ablations", "rmsnorm", "--preset", "tiny", "--train", str(SAMPLES / "train.fi-en.tsv"),
            "--dev", str(dev), "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--device", "cpu"]
    main(argv)
    result = json.loads((tmp_path / "out" / "training.json").read_text())
    assert result["systems"]["sinusoidal"]["seeds"] == [0] and result["systems"]["rope"]["seeds"] == [0, 1]
    assert (result["recipe"], result["ablations_kept"], result["average_last"]) == (
        "lr1e-3_warmup800_average3", ["rmsnorm"], 3)
    assert (result["train_config"]["lr"], result["train_config"]["warmup"]) == (1e-3, 800)
    entry = json.loads((tmp_path / "runs" / "rope_seed1" / "bench_entry.json").read_text())["entry"]
    assert entry["select"]["step"] == "mean of the last 3"  # scored by the averaged weights, saved beside the run
    averaged = json.loads((tmp_path / "runs" / "rope_seed1" / "average_last3" / "config.json").read_text())
    assert averaged["model"]["positional"] == "rope"
    ours = ("rope_rmsnorm", "rope", "relative_bias", "sinusoidal")  # RoPE with the kept ablation joins ours
    assert list(result["systems"]) == [*ours, "marian_peer"]
    config = json.loads((tmp_path / "runs" / "rope_rmsnorm_seed1" / "config.json").read_text())["model"]
    assert (config["positional"], config["norm"]) == ("rope", "rmsnorm")
    assert {"rope_rmsnorm_vs_marian_peer", "rope_rmsnorm_vs_rope"} <= set(result["comparisons"])
    select = {n: result["systems"][n]["select_bleu"]["mean"] for n in ours if n != "sinusoidal"}
    assert result["best_scheme"] == max(select, key=select.get)  # chosen on the selection split
    entry = result["comparisons"]["best_vs_marian"]["dev.tatoeba"]["chrf"]
    best = result["systems"][result["best_scheme"]]["dev.tatoeba"]["chrf"]
    peer = result["systems"]["marian_peer"]["dev.tatoeba"]["chrf"]
    assert entry["per_seed"] == {result["best_scheme"]: best["per_seed"], "marian_peer": peer["per_seed"]}
    assert entry["mean"]["diff"] == pytest.approx(best["mean"] - peer["mean"])
    assert entry["verdict"] == verdict(entry["mean"]["diff"], entry["ci95"], list(entry["std"].values()))
    ratio = result["throughput_ratio_vs_marian"]
    assert set(ratio) >= {"median", "iqr", "repeats"} and ratio["repeats"] == 2
    assert all(result["peak_memory"][n]["peak_memory_mb"] > 0 for n in (result["best_scheme"], "marian_peer"))
    params = {n: s["parameters"] for n, s in result["systems"].items()}
    assert abs(params["marian_peer"] / params["rope"] - 1) < 0.1  # the same sizes (Marian adds its logits bias)
    tp = result["throughput"]
    assert set(tp["time_by_op_family"]) == {result["best_scheme"], "marian_peer"}
    assert tp["ceiling_vs_marian"] == pytest.approx(tp["models"]["marian_peer"]["median_ms"] / sum(
        tp["time_by_op_family"][result["best_scheme"]][f]["ms"] for f in ("matmul", "attention")))
    assert "| matmul |" in (tmp_path / "out" / "training.md").read_text()
    assert {p.name for p in (tmp_path / "out").glob("training*")} == {
        "training.json", "training.md", "training_bleu.png", "training_throughput.png", "training_runs"}
    assert len(list((tmp_path / "out" / "training_runs").glob("*_seed*.json"))) == 9  # every scored run's copy
    from translation.bench_decoding import main as decoding_main

    # the weights the best system's first seed was scored by: under an averaging recipe, its averaged checkpoint
    assert result["best_checkpoint"] == str(tmp_path / "runs" / f"{result['best_scheme']}_seed0" / "average_last3")
    seed1 = str(tmp_path / "runs" / f"{result['best_scheme']}_seed1" / "average_last3")  # any run of it decodes
    decoding_main(["--checkpoint", seed1, "--dev", str(dev),
                   "--limit", "12", "--diversity-limit", "3", "--repeats", "2", "--out", str(tmp_path / "dec"),
                   "--device", "cpu"])
    dec = json.loads((tmp_path / "dec" / "decoding.json").read_text())
    assert dec["eval_sets"] == {"select": 12, "dev.tatoeba": 12}  # the run's own selection split, carved again
    assert dec["best_strategy_chosen_on"] == "select" and dec["best_strategy"] == max(
        ("greedy", "beam2", "beam4", "beam8"), key=lambda n: dec["strategies"][n]["select"]["bleu"])
    for key in ("kv_cache_speedup", "greedy_throughput_ratio_vs_hf_generate", "beam_throughput_ratio_vs_hf_generate"):
        assert set(dec[key]) == {"median", "iqr", "repeats", "verdict"} and dec[key]["repeats"] == 2
    assert set(dec["beam4_vs_greedy"]) == {"dev.tatoeba"}
    assert dec["beam4_vs_greedy"]["dev.tatoeba"]["bleu"]["seeds"] == [1]  # the checkpoint's training seed
    split = dec["side_by_side"]["time_by_op_family"]
    assert set(split) == {"greedy", "hf_greedy", "beam4", "hf_beam4"}
    assert all(s["matmul"]["ms"] > 0 for s in split.values())
    ceiling = dec["side_by_side"]["ceiling_vs_hf_generate"]["greedy"]
    hf_ms = dec["side_by_side"]["timings"]["hf_greedy"]["median_ms"]
    assert ceiling == pytest.approx(hf_ms / (split["greedy"]["matmul"]["ms"] + split["greedy"]["attention"]["ms"]))
    assert "Where the time goes" in (tmp_path / "dec" / "decoding.md").read_text()
    speed = json.loads((tmp_path / "dec" / "decoding_speed.json").read_text())  # the study refreshes it too
    assert speed["side_by_side"] == dec["side_by_side"] and speed["model"]["checkpoint"].endswith("average_last3")
    assert "hyps" not in dec["strategies"]["greedy"]["select"]

    # a rerun reuses every trained and scored run: from its folder, or, in a later sitting on a machine without
    # the run folders, from the results' copy
    kept = json.loads((tmp_path / "out" / "training_runs" / "marian_peer_seed1.json").read_text())
    assert kept == json.loads((tmp_path / "runs" / "marian_peer_seed1" / "bench_entry.json").read_text())
    best = result["best_scheme"]
    for run in [tmp_path / "runs" / "marian_peer_seed1", *(tmp_path / "runs").glob(f"{best}_seed*")]:
        shutil.rmtree(run)
    mtime = (tmp_path / "runs" / "marian_peer_seed0" / "bench_entry.json").stat().st_mtime
    main(argv)
    again = json.loads((tmp_path / "out" / "training.json").read_text())
    assert (tmp_path / "runs" / "marian_peer_seed0" / "bench_entry.json").stat().st_mtime == mtime
    assert not (tmp_path / "runs" / "marian_peer_seed1").exists()  # not trained again
    assert again["comparisons"] == result["comparisons"] and again["systems"] == result["systems"]
    # no weights of the best system here: the tokenizer is trained again for the timing, and none is named
    assert again["best_checkpoint"] is None and again["model_config"] == result["model_config"]


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


def test_the_benchmark_trains_under_the_decisions_of_the_recipe_sweep(tmp_path):
    from shared_utils.errors import UserError
    from translation.bench_training import decisions, systems_for

    with pytest.raises(UserError, match=f"^{tmp_path / 'recipe.json'} not found: run `make translation-recipe` "
                                        "first .*, or pass --recipe base$"):
        decisions(tmp_path, None, None)
    (tmp_path / "recipe.json").write_text(json.dumps({"chosen": "lr1e-3_warmup800"}))
    (tmp_path / "ablations.json").write_text(json.dumps({"kept": ["swiglu", "no_bias"]}))
    assert decisions(tmp_path, None, None) == ("lr1e-3_warmup800", ["swiglu", "no_bias"])
    assert decisions(tmp_path, "smoothing0.2", []) == ("smoothing0.2", [])  # the flags win
    assert decisions(tmp_path, None, ["rmsnorm", "rmsnorm"]) == ("lr1e-3_warmup800", ["rmsnorm"])
    assert decisions(tmp_path, "base_average3", []) == ("base_average3", [])  # averaging recipes run too
    systems = systems_for(["swiglu", "no_bias"])
    assert systems["rope_swiglu_no_bias"] == {"positional": "rope", "ffn": "swiglu", "bias": False}
    assert list(systems_for([])) == ["rope", "relative_bias", "sinusoidal", "marian_peer"]


def test_a_run_scored_with_other_settings_is_refused_not_reused(tmp_path):
    from shared_utils.checkpoint import store_result, stored_result
    from shared_utils.errors import UserError
    from translation.bench_training import stale_run

    run = tmp_path / "rope_seed0"
    done = run / "bench_entry.json"
    assert stored_result(done, {"train": {"lr": 1e-3}}, stale=stale_run(run)) is None
    store_result(done, {"train": {"lr": 1e-3}}, {"select": 1})
    assert stored_result(done, {"train": {"lr": 1e-3}}, stale=stale_run(run)) == {"select": 1}
    with pytest.raises(UserError, match=f"^{run} was trained and scored with other settings than this command's; "
                                        "pass a new --runs folder"):
        stored_result(done, {"train": {"lr": 5e-4}}, stale=stale_run(run))


def test_the_decoding_study_names_a_training_file_without_a_checkpoint(tmp_path, monkeypatch, capsys):
    from shared_utils.testing import run_cli
    from translation import bench_decoding

    monkeypatch.setattr(bench_decoding, "RESULTS", tmp_path)
    (tmp_path / "training.json").write_text(json.dumps({"best_scheme": "rope", "seeds": [1]}))
    assert run_cli(bench_decoding.main, ["--device", "cpu"], capsys) == (
        2, "", f"error: {tmp_path / 'training.json'} names no checkpoint: no run of its best system (rope) was on "
               f"the machine that wrote it; delete {tmp_path / 'training_runs'}/rope_seed1.json and rerun "
               "translation/bench_training.py to train one here, or pass --checkpoint\n")
    (tmp_path / "training.json").write_text(json.dumps({"best_scheme": "rope", "steps": 2000}))  # the old format
    assert run_cli(bench_decoding.main, ["--device", "cpu"], capsys) == (
        2, "", f"error: {tmp_path / 'training.json'} names no checkpoint (an older bench_training wrote it): rerun "
               "translation/bench_training.py, or pass --checkpoint\n")


def test_the_decoding_peer_has_our_sizes_and_its_own_architecture():
    from translation.bench_decoding import peer_config
    from translation.config import model_config
    from translation.model import build_model

    ours = model_config("tiny", ffn="swiglu", norm="rmsnorm", bias=False)  # an ablated best system
    peer = peer_config(ours)
    assert (peer.arch, peer.ffn, peer.norm, peer.bias) == ("marian", "gelu", "layernorm", True)
    assert {k: v for k, v in vars(peer).items() if k not in ("arch", "ffn", "norm", "bias")} == {
        k: v for k, v in vars(ours).items() if k not in ("arch", "ffn", "norm", "bias")}
    assert type(build_model(peer).hf).__name__ == "MarianMTModel"


def test_the_decoding_speed_alone_needs_no_checkpoint(tmp_path):
    from translation.bench_decoding import main as decoding_main
    from translation.bench_decoding import random_batch
    from translation.model import EOS, PAD

    src = random_batch(1000, 32, "cpu")
    lengths = (src != PAD).sum(1)
    assert lengths.min() >= 8 and lengths.max() <= 30 and bool((src[torch.arange(32), lengths - 1] == EOS).all())
    decoding_main(["--speed-only", "--preset", "tiny", "--repeats", "2", "--out", str(tmp_path), "--device", "cpu"])
    speed = json.loads((tmp_path / "decoding_speed.json").read_text())
    assert speed["model"]["preset"] == "tiny" and speed["side_by_side"]["batch"] == 32
    for key in ("kv_cache_speedup", "greedy_throughput_ratio_vs_hf_generate", "beam_throughput_ratio_vs_hf_generate"):
        assert speed[key] == speed["side_by_side"][key] and speed[key]["repeats"] == 2
    assert {p.name for p in tmp_path.iterdir()} == {"decoding_speed.json", "decoding_speed.md", "decoding_speed.png"}
