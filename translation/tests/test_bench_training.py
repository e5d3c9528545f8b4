"""The training benchmark end to end at toy size: seeds, paired comparisons, interleaved throughput."""

import json
import shutil
from pathlib import Path

import pytest

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
    assert entry["verdict"] == verdict(entry["mean"]["diff"], entry["ci95"], entry["seed_test"], entry["seed_p"])
    assert entry["seed_test"] == "welch"  # two seeds a side
    for key in ("throughput_ratio_vs_marian", "throughput_ratio_padded_vs_marian"):  # padding-free and like for like
        ratio = result[key]
        assert set(ratio) >= {"median", "iqr", "ci95", "per_round", "repeats"} and ratio["repeats"] == 2
    for n in (result["best_scheme"], "marian_peer"):  # the same imports in both processes: equal RSS before the model
        assert result["peak_memory"][n]["peak_memory_mb"] > result["peak_memory"][n]["baseline_mb"] > 0
    before = [result["peak_memory"][n]["baseline_mb"] for n in (result["best_scheme"], "marian_peer")]
    assert abs(before[0] - before[1]) < 30
    params = {n: s["parameters"] for n, s in result["systems"].items()}
    assert abs(params["marian_peer"] / params["rope"] - 1) < 0.1  # the same sizes (Marian adds its logits bias)
    tp = result["throughput"]
    assert set(tp["time_by_op_family"]) == {result["best_scheme"], f"{result['best_scheme']}_padded", "marian_peer"}
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
    decoding_main(["--checkpoint", seed1, "--dev", str(dev), "--limit", "12", "--diversity-limit", "3",
                   "--repeats", "2", "--profile-calls", "1", "--out", str(tmp_path / "dec"), "--device", "cpu"])
    dec = json.loads((tmp_path / "dec" / "decoding.json").read_text())
    assert dec["eval_sets"] == {"select": 12, "dev.tatoeba": 12}  # the run's own selection split, carved again
    assert dec["best_strategy_chosen_on"] == "select" and dec["best_strategy"] == max(
        ("greedy", "beam2", "beam4", "beam8"), key=lambda n: dec["strategies"][n]["select"]["bleu"])
    for key in ("kv_cache_speedup", "greedy_throughput_ratio_vs_hf_generate", "beam_throughput_ratio_vs_hf_generate"):
        assert set(dec[key]) == {"median", "iqr", "ci95", "per_round", "repeats", "verdict"}
        assert dec[key]["repeats"] == 2
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
    # --throughput-only times the steps again and keeps the runs and comparisons
    main([*argv, "--throughput-only"])
    timed = json.loads((tmp_path / "out" / "training.json").read_text())
    assert timed["comparisons"] == again["comparisons"] and timed["throughput"] != again["throughput"]
    assert timed["throughput_device_info"]["device"] == "cpu"


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
    from translation.study import stale_run

    run = tmp_path / "rope_seed0"
    done = run / "bench_entry.json"
    assert stored_result(done, {"train": {"lr": 1e-3}}, stale=stale_run(run)) is None
    store_result(done, {"train": {"lr": 1e-3}}, {"select": 1})
    assert stored_result(done, {"train": {"lr": 1e-3}}, stale=stale_run(run)) == {"select": 1}
    with pytest.raises(UserError, match=f"^{run} was trained and scored with other settings than this command's; "
                                        "pass a new --runs folder"):
        stored_result(done, {"train": {"lr": 5e-4}}, stale=stale_run(run))
