import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from quantization.config import make_config
from quantization.measure import run_method
from quantization.quantize import METHODS
from quantization.training import get_lr, train
from shared_utils.errors import UserError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def agnews_csv(tmp_path):
    topics = ["stocks fell as markets slid", "the team won the final match", "new chip speeds up phones",
              "leaders met to discuss the war"]
    labels = [2, 1, 3, 0]
    rows = ["label,text"] + [f'{labels[i % 4]},"{topics[i % 4]} number {i}"' for i in range(64)]
    path = tmp_path / "ag.csv"
    path.write_text("\n".join(rows) + "\n")
    return str(path)


def small_cfg(csv, **kw):
    base = dict(train=csv, dev=csv, batch_size=8, epochs=0.5, eval_every=2, tiny_vocab=300, tiny_layers=1,
                tiny_d_model=32, tiny_heads=2, max_len=32, select_size=0)
    return make_config("tiny", **{**base, **kw})


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_lr_schedule_warms_up_then_decays_to_zero():
    cfg = make_config("tiny", lr=1.0, warmup=0.1)
    lrs = [get_lr(s, 100, cfg) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:])) and lrs[-1] == pytest.approx(1 / 90)


def test_resume_after_interruption_continues_identically(agnews_csv, tmp_path):
    torch.use_deterministic_algorithms(True)
    try:
        full = tmp_path / "full"
        train(small_cfg(agnews_csv), full, torch.device("cpu"))
        cut = tmp_path / "cut"
        train(small_cfg(agnews_csv, time_budget_min=1e-9), cut, torch.device("cpu"))  # stops after step 1
        assert [m["step"] for m in metrics(cut)] == [1]
        train(small_cfg(agnews_csv), cut, torch.device("cpu"))  # resumes from the step-1 checkpoint
    finally:
        torch.use_deterministic_algorithms(False)
    a, b = metrics(full), metrics(cut)
    assert [m["step"] for m in b] == [1, 2, 3, 4]
    assert [m["loss"] for m in a] == [m["loss"] for m in b]  # bit-identical losses after the resume


def test_the_best_checkpoint_is_chosen_on_a_selection_split(agnews_csv, tmp_path):
    run = tmp_path / "run"
    best = train(small_cfg(agnews_csv, select_size=8, epochs=1.0), run, torch.device("cpu"))
    rows = [m for m in metrics(run) if "select_accuracy" in m]
    assert len(rows) == 4 and all("dev_accuracy" in m for m in rows)  # 56 rows left: 7 steps, eval every 2
    chosen = max(rows, key=lambda m: m["select_accuracy"])  # the first of equals
    assert best["step"] == chosen["step"] and best["accuracy"] == chosen["select_accuracy"]
    assert (run / "checkpoints" / "best").read_text().strip() == f"step_{chosen['step']:08d}"


def test_eval_rebuilds_from_the_checkpoint_and_quantizes(agnews_csv, tmp_path):
    run = tmp_path / "run"
    train(small_cfg(agnews_csv), run, torch.device("cpu"))
    fp32 = run_method(str(run), METHODS["fp32"], agnews_csv, None, latency_blocks=1)
    int8 = run_method(str(run), METHODS["int8_weight_per_channel"], agnews_csv, None, latency_blocks=1)
    labels = [int(line.split(",")[0]) for line in Path(agnews_csv).read_text().splitlines()[1:]]
    assert fp32["accuracy"] == sum(p == y for p, y in zip(fp32["predictions"], labels)) / 64
    assert sum(a == b for a, b in zip(fp32["predictions"], int8["predictions"])) >= 60  # int8 barely moves them
    assert fp32["latency_ms_b32"]["repeats"] == 1 and fp32["memory_kind"] == "cpu_peak_rss"
    assert int8["quantized_layer_bytes_ratio"] < 0.31 and int8["model_bytes"] < fp32["model_bytes"]
    with pytest.raises(UserError, match="w8a8 needs --train"):
        run_method(str(run), METHODS["w8a8"], agnews_csv, None)


def test_onnxruntime_int8_agrees_with_fp32_on_the_sample_set(agnews_csv, tmp_path):
    run = tmp_path / "run"
    train(small_cfg(agnews_csv), run, torch.device("cpu"))
    dev = str(ROOT / "quantization" / "samples" / "dev.csv")
    fp32 = run_method(str(run), METHODS["fp32"], dev, None, device="cpu", latency=False)
    ort = run_method(str(run), METHODS["onnxruntime_fp32"], dev, None, device="cpu", latency=False)
    int8 = run_method(str(run), METHODS["onnxruntime_int8"], dev, None, device="cpu", latency=False)
    assert ort["predictions"] == fp32["predictions"]
    agree = sum(a == b for a, b in zip(int8["predictions"], fp32["predictions"])) / len(fp32["predictions"])
    assert agree >= 0.98 and int8["model_bytes"] < ort["model_bytes"] and ort["peak_memory_mb"] > 0


def test_eval_saves_a_quantized_model_and_evaluates_it_again_identically(agnews_csv, tmp_path, capsys):
    from quantization.eval import main

    run = tmp_path / "run"
    train(small_cfg(agnews_csv), run, torch.device("cpu"))
    common = ["--checkpoint", str(run), "--dev", agnews_csv, "--train", agnews_csv, "--latency-blocks", "1",
              "--calib-batches", "1", "--device", "cpu"]
    main([*common, "--method", "w8a8", "--save-quantized", str(tmp_path / "q"), "--json", str(tmp_path / "a.json")])
    main([*common, "--load-quantized", str(tmp_path / "q"), "--json", str(tmp_path / "b.json")])
    a, b = (json.loads((tmp_path / f"{n}.json").read_text()) for n in "ab")
    assert b["method"] == "w8a8" and a["predictions"] == b["predictions"]  # the saved calibration, reused exactly
    assert b["model_bytes"] == a["model_bytes"] and b["accuracy"] == a["accuracy"]
    # a flag that would do nothing is refused; a folder for --json is one sentence; the summary is a table
    from shared_utils.testing import assert_one_line_error, run_cli

    assert_one_line_error(run_cli(main, [*common, "--load-quantized", str(tmp_path / "q"), "--method", "fp32"],
                                  capsys), "--method does nothing with --load-quantized")
    assert_one_line_error(run_cli(main, [*common, "--json", str(tmp_path)], capsys),
                          f"{tmp_path} is a folder: name a file to write")
    code, out, err = run_cli(main, [*common, "--no-latency", "--limit", "8"], capsys)
    assert code == 0 and out.splitlines()[0].split() == ["method", "fp32"] and "accuracy" in out
    assert "latency" not in out  # --no-latency skips the timing
    code, out, err = run_cli(main, [*common, "--method", "fp16", "--limit", "4", "--no-latency"], capsys)
    assert "warning: fp16 on a CPU" in err


def test_config_errors_are_clear():
    with pytest.raises(UserError, match="--preset must be one of"):
        make_config("huge")
    with pytest.raises(UserError, match="divisible by --grad-accum"):
        make_config("tiny", batch_size=10, grad_accum=3)


def run_script(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}  # deterministic: never touch the network from tests
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)


def test_scripts_have_help():
    for script in ("quantization/train.py", "quantization/eval.py", "quantization/bench.py"):
        proc = run_script(script, "--help")
        assert proc.returncode == 0 and "usage:" in proc.stdout


def test_unreachable_hub_data_fails_with_one_sentence(tmp_path):
    proc = run_script("quantization/train.py", "--preset", "gpt2-large", "--out", str(tmp_path / "r"))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "--train ../shared/data/agnews/train.csv" in lines[0]


@pytest.fixture
def tiny_gpt2_folder(tmp_path, agnews_csv) -> Path:
    """A folder shaped like the hub's openai-community/gpt2-large: a GPT2LMHeadModel checkpoint and a GPT-2
    style tokenizer with an end-of-text token and no pad token, written by save_pretrained."""
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    from shared_utils.bpe import train_bpe

    texts = [line.split(",", 1)[1] for line in Path(agnews_csv).read_text().splitlines()[1:]]
    tok = PreTrainedTokenizerFast(tokenizer_object=train_bpe(texts, 300, ["<|endoftext|>"]),
                                  eos_token="<|endoftext|>", bos_token="<|endoftext|>")
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=2, n_head=2,
                                       bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id))
    folder = tmp_path / "gpt2-large-local"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_the_gpt2_large_preset_path_runs_on_a_local_folder(tiny_gpt2_folder, agnews_csv, tmp_path):
    from quantization.model import build_classifier

    cfg = make_config("gpt2-large", model=str(tiny_gpt2_folder), train=agnews_csv, dev=agnews_csv, select_size=8,
                      batch_size=8, grad_accum=4, epochs=0.5, eval_every=2, max_len=32, gradient_checkpointing=True)
    model, tok = build_classifier(cfg)
    assert type(model).__name__ == "GPT2ForSequenceClassification" and model.score.out_features == 4
    assert tok.pad_token == tok.eos_token and model.config.pad_token_id == tok.eos_token_id
    model.eval()
    one = tok(["stocks fell as markets slid"], return_tensors="pt")
    padded = tok(["stocks fell as markets slid", "the team won the final match again today"], padding=True,
                 return_tensors="pt")
    assert padded["attention_mask"][0, -1] == 0  # right padding: the head must pool the last real token
    with torch.no_grad():
        assert torch.allclose(model(**one).logits[0], model(**padded).logits[0], atol=1e-5)
    run = tmp_path / "run"
    best = train(cfg, run, torch.device("cpu"))
    assert best["step"] >= 2
    result = run_method(str(run), METHODS["w8a8"], agnews_csv, agnews_csv, latency_blocks=1, calib_batches=1)
    assert result["quantized_layer_bytes_ratio"] < 0.35 and len(result["predictions"]) == 64
