import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from shared_utils.batching import token_batches
from shared_utils.errors import UserError
from shared_utils.testing import ddp_replicas_identical
from translation.config import ModelConfig, TrainConfig, model_config
from translation.data import encode_pairs
from translation.inference import load_translator, translate
from translation.tokenizer import train_tokenizer
from translation.training import get_lr, train

ROOT = Path(__file__).resolve().parents[2]
WORDS = [("yksi", "one"), ("kaksi", "two"), ("kolme", "three"), ("neljä", "four"), ("viisi", "five"),
         ("kissa", "cat"), ("koira", "dog"), ("talo", "house"), ("auto", "car"), ("puu", "tree")]


@pytest.fixture
def corpus(tmp_path) -> Path:
    lines = [f"{a} {b}\t{x} {y}" for a, x in WORDS for b, y in WORDS]  # 100 two-word pairs
    path = tmp_path / "train.tsv"
    path.write_text("\n".join(lines) + "\n\n", encoding="utf-8")
    return path


def configs(corpus: Path, **train_kw) -> tuple[ModelConfig, TrainConfig]:
    mcfg = model_config("tiny", dropout=0.1, max_len=16)
    tcfg = TrainConfig(**{**dict(train=str(corpus), dev=[str(corpus)], batch_tokens=200, steps=4, eval_every=2,
                               dev_limit=10, warmup=2, lr=1e-3, select_size=0), **train_kw})
    return mcfg, tcfg


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_lr_warms_up_then_decays_with_inverse_sqrt():
    cfg = TrainConfig(lr=1.0, warmup=4)
    assert [round(get_lr(s, cfg), 4) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, round((4 / 5) ** 0.5, 4),
                                                           round((4 / 6) ** 0.5, 4)]


def test_batches_respect_the_token_budget_and_truncation_is_counted(corpus):
    from translation.data import Pair, load_parallel

    pairs = load_parallel(corpus).records
    tok = train_tokenizer([t for p in pairs for t in (p.src, p.tgt)], 300)
    data = encode_pairs(tok, pairs + [Pair("kissa " * 30, "cat")], max_len=16)
    assert data.truncated == 1 and max(len(s) for s in data.src) == 16
    batches = token_batches(data, 120, seed=0, epoch=0)
    assert sorted(i for b in batches for i in b) == list(range(len(data.src)))  # every pair exactly once
    for b in batches:
        width = max(len(data.src[i]) for i in b) + max(len(data.tgt[i]) for i in b)
        assert len(b) * width <= 120 or len(b) == 1
    assert batches == token_batches(data, 120, seed=0, epoch=0)
    assert batches != token_batches(data, 120, seed=0, epoch=1)


def test_resume_after_interruption_gives_the_identical_next_step_loss(corpus, tmp_path):
    full = tmp_path / "full"
    train(*configs(corpus), full, "cpu")
    cut = tmp_path / "cut"
    train(*configs(corpus, time_budget_min=1e-9), cut, "cpu")  # stops (with a checkpoint) after step 1
    assert [m["step"] for m in metrics(cut)] == [1]
    train(*configs(corpus), cut, "cpu")
    a, b = metrics(full), metrics(cut)
    assert [m["step"] for m in b] == [1, 2, 3, 4]
    assert [m["loss"] for m in a] == [m["loss"] for m in b]
    assert (full / "checkpoints" / "best").is_file()
    again = train(*configs(corpus), cut, "cpu")  # resumed at its end: no step, so no throughput to report
    assert again["step"] == 4 and again["target_tokens_per_s"] is None and len(metrics(cut)) == 4


def test_the_best_checkpoint_is_chosen_on_a_selection_split_carved_from_training(corpus, tmp_path):
    run = tmp_path / "run"
    result = train(*configs(corpus, select_size=10, steps=6), run, "cpu")
    rows = [m for m in metrics(run) if "select/bleu" in m]
    assert [m["step"] for m in rows] == [2, 4, 6] and all("train/bleu" in m for m in rows)  # dev still logged
    chosen = max(rows, key=lambda m: m["select/bleu"])  # the first of equals, as strict > keeps it
    assert result["best"]["step"] == chosen["step"] and result["best"]["bleu"] == chosen["select/bleu"]
    best = (run / "checkpoints" / "best").read_text().strip()
    assert best == f"step_{chosen['step']:08d}"  # pruning keeps the best checkpoint
    log = (run / "config.json").read_text()
    assert '"select_size": 10' in log


def test_checkpoint_alone_translates_and_scores(corpus, tmp_path):
    run = tmp_path / "run"
    train(*configs(corpus), run, "cpu")
    model, tok, cfg = load_translator(run, torch.device("cpu"))
    hyps = translate(model, tok, cfg, ["kissa koira", "", "talo"], torch.device("cpu"))
    assert len(hyps) == 3 and hyps[1] == ""
    with pytest.raises(UserError, match="checkpoint not found"):
        load_translator(tmp_path / "missing", torch.device("cpu"))


def test_bad_data_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("kissa\tcat\nkoira dog\n", encoding="utf-8")
    mcfg, tcfg = configs(bad)
    with pytest.raises(UserError, match=r"bad.tsv:2: expected 2 tab-separated columns, found 1"):
        train(mcfg, tcfg, tmp_path / "run", "cpu")


def run_script(*args: str, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([*args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300, **kw)


def test_scripts_have_help_and_explain_the_unreachable_hub(tmp_path):
    for script in ("translation/train.py", "translation/eval.py", "translation/translate.py"):
        assert "usage:" in run_script(sys.executable, script, "--help").stdout
    proc = run_script(sys.executable, "translation/train.py", "--out", str(tmp_path / "r"))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1
    assert "--train ../shared/data/translation/train.fi-en.tsv" in lines[0]


def test_ddp_on_two_cpu_processes_keeps_replicas_identical(corpus, tmp_path):
    """torchrun with 2 gloo processes: both ranks end with bit-identical weights."""
    assert ddp_replicas_identical(
        "from translation.config import TrainConfig, model_config", f"cfg = TrainConfig(train={str(corpus)!r}, "
        f"dev=[{str(corpus)!r}], batch_tokens=200, steps=3, select_size=0, eval_every=100, dev_limit=5, warmup=1)\n"
        f"t.train(model_config('tiny', max_len=16), cfg, pathlib.Path({str(tmp_path / 'run')!r}), 'cpu')",
        "translation.training", tmp_path, ROOT)


def test_translate_cli_reads_stdin_keeps_empty_lines_warns_on_overlong_and_fails_clearly(corpus, tmp_path):
    run = tmp_path / "run"
    train(*configs(corpus), run, "cpu")
    overlong = " ".join(["kissa"] * 40)  # > max_len 16 tokens
    proc = run_script(sys.executable, "translation/translate.py", "--checkpoint", str(run), "--strategy", "beam",
                      "--beam-size", "3", "--nbest", "2", input=f"kissa koira\n\n{overlong}\n")
    assert proc.returncode == 0, proc.stderr
    rows = [line.split("\t") for line in proc.stdout.splitlines()]
    assert [r[0] for r in rows] == ["0", "0", "2", "2"]  # two hypotheses per non-empty line, none for the empty
    assert float(rows[0][1]) >= float(rows[1][1])
    assert "1 line(s) longer than 16 tokens were truncated" in proc.stderr
    proc = run_script(sys.executable, "translation/translate.py", "--checkpoint", str(run), "--strategy", "sample",
                      "--top-k", "5", "--seed", "1", input="kissa koira\n\ntalo\n")
    assert proc.returncode == 0 and len(proc.stdout.splitlines()) == 3 and proc.stdout.splitlines()[1] == ""
    proc = run_script(sys.executable, "translation/translate.py", "--checkpoint", str(tmp_path / "nope"), input="")
    assert proc.returncode == 2 and proc.stderr.strip() == f"error: checkpoint not found: {tmp_path / 'nope'}"


def test_eval_takes_a_strategy(corpus, tmp_path):
    run = tmp_path / "run"
    train(*configs(corpus), run, "cpu")
    hyps = tmp_path / "hyps.txt"
    proc = run_script(sys.executable, "translation/eval.py", "--checkpoint", str(run), "--input", str(corpus),
                      "--strategy", "beam", "--beam-size", "2", "--no-repeat-ngram", "3", "--output", str(hyps))
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout.splitlines()[-1])
    from translation.data import load_parallel
    from translation.metrics import translation_scores

    refs = [p.tgt for p in load_parallel(corpus)]
    written = hyps.read_text(encoding="utf-8").splitlines()
    assert len(written) == len(refs)  # one hypothesis per scored pair, in order
    expected = translation_scores(written, refs)
    assert printed == {name: score.score for name, score in expected.items()}  # the scores of those hypotheses
