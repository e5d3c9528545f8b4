import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass, fields
from pathlib import Path

import pytest
import torch

from moe_summarization.config import VARIANTS, MoEConfig, SummarizerConfig, SumTrainConfig, summarizer_config
from moe_summarization.data import Doc
from moe_summarization.decoding import beam_search
from moe_summarization.inference import lead1, load_summarizer, summarize
from moe_summarization.metrics import rouge_scores
from moe_summarization.model import active_ffn_parameters, build_model, label_smoothed_loss
from moe_summarization.pretrained import BASELINES, Baseline, generate, load, run_baselines, tiny_baseline
from moe_summarization.tokenizer import BOS, EOS, PAD
from moe_summarization.training import train
from shared_utils.errors import UserError
from shared_utils.testing import ddp_replicas_identical

ROOT = Path(__file__).resolve().parents[2]
PAIRS = [
    ("The central bank raised interest rates by half a point on Tuesday to fight inflation.", "bank raises rates"),
    ("Heavy snow closed the main airport for a second day, stranding thousands of travellers.", "snow shuts airport"),
    ("The home team won the cup final after a penalty shoot-out in front of a record crowd.", "home team wins cup"),
    ("Scientists found water ice in a crater near the moon's south pole, a study says.", "ice found on moon"),
]


@pytest.fixture
def corpus(tmp_path) -> Path:
    path = tmp_path / "train.jsonl"
    rows = [{"id": str(i), "source": "toy", "document": d, "summary": s} for i, (d, s) in enumerate(PAIRS * 5)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def tiny(variant: str, **kw):
    return summarizer_config("tiny", variant, dropout=0.0, **kw)


def train_cfg(corpus: Path, **kw) -> SumTrainConfig:
    base = dict(train=str(corpus), dev=str(corpus), batch_tokens=600, steps=4, eval_every=2, dev_limit=4, warmup=2,
                lr=3e-3, select_size=0)
    return SumTrainConfig(**{**base, **kw})


def test_every_variant_has_the_same_active_ffn_parameters():
    counts = {v: active_ffn_parameters(build_model(summarizer_config("small", v))) for v in VARIANTS}
    cfg = summarizer_config("small", "moe_top2")
    moe_layers = sum(cfg.is_moe_layer(i) for i in range(cfg.encoder_layers)) + \
        sum(cfg.is_moe_layer(i) for i in range(cfg.decoder_layers))
    assert moe_layers == 2
    assert counts["moe_top1"] == counts["moe_hash"] == counts["dense"]
    # top-2 over experts of d_ff/2: the same matrices, plus one extra output bias (d_model) per MoE layer
    assert counts["moe_top2"] - counts["dense"] == moe_layers * cfg.d_model
    total = {v: sum(p.numel() for p in build_model(summarizer_config("small", v)).parameters()) for v in VARIANTS}
    assert total["moe_top2"] > 3 * total["dense"] / 2  # sparse: many more parameters than any token uses


def test_variants_are_presets_of_the_moe_fields():
    top2, hashed = summarizer_config("mini", "moe_top2"), summarizer_config("mini", "moe_hash", vocab_size=900)
    assert top2.moe == MoEConfig(d_model=128, d_ff=256, num_experts=8, router="topk", k=2, capacity_factor=None,
                                 bias_update_rate=1e-2)
    assert (hashed.moe.router, hashed.moe.k, hashed.moe.d_ff, hashed.moe.hash_vocab_size) == ("hash", 1, 512, 900)
    assert hashed.moe.bias_update_rate == 0 and hashed.variant == "moe_hash"
    assert summarizer_config("mini", "dense").moe is None and summarizer_config("mini", "dense").variant == "dense"
    assert summarizer_config("tiny", "moe_top1").moe.num_experts == 4  # the size preset's
    # an explicit field beats the variant's balancer; a named balancer replaces all three numbers
    own = summarizer_config("mini", "moe_top1", moe={"aux_loss_weight": 0.02})
    assert (own.moe.aux_loss_weight, own.moe.bias_update_rate) == (0.02, 1e-2)
    z = summarizer_config("mini", "moe_top1", balancer="z_loss")
    assert (z.moe.z_loss_weight, z.moe.bias_update_rate) == (1e-3, 0.0)
    with pytest.raises(UserError, match="need an MoE --variant"):
        summarizer_config("mini", "dense", moe={"k": 1})
    with pytest.raises(UserError, match="d_model 64 differs from the model's 128"):
        SummarizerConfig(d_model=128, moe=MoEConfig(d_model=64))


def test_every_moe_field_is_a_training_flag():
    from moe_summarization.train import parse_args

    help_text = subprocess.run([sys.executable, "-m", "moe_summarization.train", "--help"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout
    derived = {"d_model": "--d-model", "hash_vocab_size": "--vocab-size"}  # the summarizer's own fields
    for f in fields(MoEConfig):
        assert derived.get(f.name, "--moe-" + f.name.replace("_", "-")) in help_text, f.name
    mcfg, _, _, _ = parse_args(["--out", "x", "--size", "mini", "--moe-k", "1", "--moe-capacity-factor", "none",
                                "--moe-eval-capacity-factor", "2", "--moe-dispatch", "padded", "--no-moe-bias",
                                "--moe-activation", "swiglu", "--moe-jitter", "0.01", "--moe-num-experts", "4"])
    assert mcfg.moe == MoEConfig(d_model=128, d_ff=512, num_experts=4, k=1, capacity_factor=None,
                                 eval_capacity_factor=2.0, dispatch="padded", bias=False, activation="swiglu",
                                 jitter=0.01, bias_update_rate=1e-2)
    assert mcfg.variant == "custom"  # the default preset, moe_top2, with its k changed: no preset's name fits


@pytest.mark.parametrize("variant", VARIANTS)
def test_incremental_decoding_equals_teacher_forcing(variant):
    torch.manual_seed(0)
    model = build_model(tiny(variant)).eval()
    src = torch.randint(4, 600, (3, 10))
    src[1, 7:] = PAD
    tgt = torch.cat([torch.full((3, 1), BOS), torch.randint(4, 600, (3, 5))], dim=1)
    with torch.no_grad():
        full, _, _ = model(src, tgt)
        state = model.start(src)
        steps = []
        for t in range(tgt.shape[1]):
            logits, state = model.decode_step(tgt[:, t], state)
            steps.append(logits)
    assert torch.allclose(torch.stack(steps, 1), full, atol=1e-4)


def test_copy_head_mixes_a_normalised_vocabulary_and_copy_distribution():
    torch.manual_seed(0)
    src = torch.randint(4, 600, (2, 9))
    src[1, 6:] = PAD
    tgt = torch.cat([torch.full((2, 1), BOS), torch.randint(4, 600, (2, 4))], dim=1)
    model = build_model(tiny("moe_top2")).eval()
    plain = build_model(tiny("moe_top2", copy=False)).eval()
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("copy.")})
    with torch.no_grad():
        scores, _, _ = model(src, tgt)
        assert torch.allclose(scores.logsumexp(-1), torch.zeros(2, 5), atol=1e-5)  # log-probabilities
        with torch.autocast("cpu", dtype=torch.bfloat16):  # as train.py runs on CUDA: the mixing stays fp32
            mixed, _, _ = model(src, tgt)
        assert mixed.dtype == torch.float32 and torch.allclose(mixed.logsumexp(-1), torch.zeros(2, 5), atol=1e-5)
        model.copy.gate.weight.zero_()
        model.copy.gate.bias.fill_(50.0)  # gate = 1: generate only, the plain model's distribution
        generate_only, _, _ = model(src, tgt)
        logits, _, _ = plain(src, tgt)
        assert torch.allclose(generate_only, logits.log_softmax(-1), atol=1e-5)
        model.copy.gate.bias.fill_(-50.0)  # gate = 0: copy only, all mass on the real tokens of the document
        copy_only, _, _ = model(src, tgt)
    for row in range(2):
        real = src[row][src[row] != PAD].unique()
        assert torch.allclose(copy_only[row].exp()[:, real].sum(-1), torch.ones(5), atol=1e-5)
    assert copy_only[1].exp()[:, PAD].max() < 1e-6  # padding positions are never copied


def test_lowercase_tokenizer_gives_all_caps_headlines_the_document_ids():
    from moe_summarization.tokenizer import train_tokenizer

    texts = [d for d, _ in PAIRS] * 3
    assert train_tokenizer(texts, 300).encode("BANK RAISES RATES").ids != \
        train_tokenizer(texts, 300).encode("bank raises rates").ids
    tok = train_tokenizer(texts, 300, lowercase=True)
    assert tok.encode("BANK RAISES RATES").ids == tok.encode("bank raises rates").ids


def test_beam_search_respects_min_max_length_and_no_repeat_ngram():
    torch.manual_seed(0)
    model = build_model(tiny("moe_top2")).eval()
    src = torch.randint(4, 600, (4, 12))
    for hyps in beam_search(model, src, beam_size=3, nbest=3, min_len=5, max_len=9, no_repeat_ngram=2):
        for h in hyps:
            assert 6 <= len(h.tokens) <= 9 and h.tokens[-1] == EOS  # >= 5 tokens before EOS, EOS within 9
            grams = list(zip(h.tokens, h.tokens[1:]))
            assert len(grams) == len(set(grams))
    assert all(len(n[0].tokens) <= 3 for n in beam_search(model, src, beam_size=2, max_len=3))


def test_tiny_moe_summarizer_overfits_a_handful_of_pairs(corpus, tmp_path):
    torch.manual_seed(0)
    run = tmp_path / "run"
    result = train(tiny("moe_top2", vocab_size=300, balancer="own"),
                   train_cfg(corpus, steps=150, eval_every=150, lr=3e-3, label_smoothing=0.0, warmup=10), run, "cpu")
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["loss"] < 0.3
    assert len(records[-1]["moe"]) == 2 and len(records[-1]["moe"][0]["tokens_per_expert"]) == 4
    model, tok, cfg = load_summarizer(run, torch.device("cpu"))
    docs = [Doc(d, s) for d, s in PAIRS]
    preds = summarize(model, tok, cfg, docs, torch.device("cpu"), beam_size=2)
    assert sum(p == s for p, (_, s) in zip(preds, PAIRS)) >= 3, preds
    assert result["best"]["rougeL"] > 50


def test_resume_gives_the_identical_next_step_loss(corpus, tmp_path):
    straight, resumed = tmp_path / "a", tmp_path / "b"
    train(tiny("moe_top1"), train_cfg(corpus, steps=4), straight, "cpu")
    train(tiny("moe_top1"), train_cfg(corpus, steps=2), resumed, "cpu")
    train(tiny("moe_top1"), train_cfg(corpus, steps=4), resumed, "cpu")
    a = [json.loads(line)["loss"] for line in (straight / "metrics.jsonl").read_text().splitlines()]
    b = [json.loads(line)["loss"] for line in (resumed / "metrics.jsonl").read_text().splitlines()]
    assert a == b


def test_an_incompatible_checkpoint_fails_with_one_clear_error(corpus, tmp_path):
    run = tmp_path / "run"
    train(tiny("moe_top1"), train_cfg(corpus, steps=2), run, "cpu")
    config = next((run / "checkpoints").glob("step_*")) / "config.json"
    saved = json.loads(config.read_text())
    saved["model"]["num_experts"] = 2  # as if written by other code: its weights no longer fit
    config.write_text(json.dumps(saved))
    with pytest.raises(UserError, match="not compatible with this version.*retrain into a new --out"):
        train(tiny("moe_top1"), train_cfg(corpus, steps=4), run, "cpu")
    with pytest.raises(UserError, match="not compatible"):
        load_summarizer(run, torch.device("cpu"))


def test_metrics_and_lead1_on_known_pairs():
    scores = rouge_scores(["the cat sat"], ["the cat sat on the mat"])
    assert scores["rouge1"] == pytest.approx(100 * 2 * 1.0 * 0.5 / 1.5)  # P = 3/3, R = 3/6
    assert scores["rouge2"] == pytest.approx(100 * 2 * 1.0 * 0.4 / 1.4)  # P = 2/2, R = 2/5
    assert lead1("Markets fell sharply. Investors fled.\nMore text.") == "Markets fell sharply."
    assert lead1("headline without a full stop\nbody") == "headline without a full stop"
    assert math.isclose(float(label_smoothed_loss(torch.zeros(1, 2, 5), torch.tensor([[4, PAD]]), 0.0)),
                        math.log(5), rel_tol=1e-6)


@pytest.mark.parametrize("name", list(BASELINES))
def test_each_baseline_class_runs_end_to_end_on_a_tiny_random_model(name, tmp_path):
    model, tok = tiny_baseline(name)
    # saved and reloaded through the same from_pretrained path the real models take, then the real generation
    # settings (beam 4, 60 new tokens, no-repeat-3-gram for seq2seq; greedy chat completion for Llama)
    model.save_pretrained(tmp_path / name)
    tok.save_pretrained(tmp_path / name)
    baseline = Baseline(str(tmp_path / name), BASELINES[name].kind, BASELINES[name].prefix)
    loaded, loaded_tok = load(baseline, torch.device("cpu"), name)
    assert next(loaded.parameters()).dtype == torch.bfloat16 and type(loaded) is type(model)
    docs = [d for d, _ in PAIRS[:3]]  # of different lengths: batches are padded (left for the causal LM)
    out = generate(loaded.float(), loaded_tok, baseline, docs, batch_size=3)
    assert out == generate(loaded.float(), loaded_tok, baseline, docs, batch_size=1)  # padding changes nothing
    if baseline.kind == "seq2seq":
        assert all(out)  # a random model still writes tokens; the tiny Llama's first line is empty


def test_llama_without_a_token_says_what_it_needs(monkeypatch):
    import moe_summarization.pretrained as baselines

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(baselines, "hub_reachable", lambda: True)
    reason = baselines.why_not(BASELINES["llama3"], torch.device("cuda"), "llama3")
    assert reason.startswith("'meta-llama/Meta-Llama-3-8B-Instruct' is a gated model: set HF_TOKEN")
    assert reason.endswith("pass --llama3 with an ungated instruct model (e.g. Qwen/Qwen2.5-7B-Instruct)")
    assert baselines.why_not(BASELINES["bart"], torch.device("cuda"), "bart") is None


def test_baselines_report_why_they_did_not_run():
    results = run_baselines([Doc("a document.", "a summary")], torch.device("cpu"))
    assert set(results) == {"bart", "t5", "llama3"}
    assert all(r["not_run"].startswith("no GPU") for r in results.values())


def run_script(*args: str, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([*args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300, **kw)


def test_scripts_have_help_and_fail_clearly(tmp_path):
    for script in ("train.py", "eval.py", "baselines.py"):
        assert "usage:" in run_script(sys.executable, f"moe_summarization/{script}", "--help").stdout
    proc = run_script(sys.executable, "moe_summarization/train.py", "--out", str(tmp_path / "r"))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "--train ../shared/data/xsum-style/train.jsonl" in lines[0]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"document": "a", "summary": "b"}\n{"document": "c"}\n', encoding="utf-8")
    with pytest.raises(UserError, match=r"bad.jsonl:2"):
        train(tiny("dense"), train_cfg(bad), tmp_path / "bad-run", "cpu")
    with pytest.raises(UserError, match="--schedule must be one of cosine, inverse_sqrt, got 'linear'"):
        train_cfg(bad, schedule="linear")


def test_ddp_on_two_cpu_processes_keeps_replicas_identical(corpus, tmp_path):
    """torchrun with 2 gloo processes, an MoE model (unused experts allowed): both ranks end identical."""
    assert ddp_replicas_identical(
        "from moe_summarization.config import SumTrainConfig, summarizer_config", f"cfg = SumTrainConfig(train="
        f"{str(corpus)!r}, dev={str(corpus)!r}, batch_tokens=200, steps=3, eval_every=100, dev_limit=2, warmup=1, "
        f"select_size=0)\nt.train(summarizer_config('tiny', 'moe_top2'), cfg, pathlib.Path({str(tmp_path / 'run')!r}), "
        "'cpu')", "moe_summarization.training", tmp_path, ROOT)


def test_benchmark_writes_the_results_file_with_every_model_peer_and_baseline(corpus, tmp_path, monkeypatch,
                                                                            capsys):
    import moe_summarization.bench_summarization as bench
    from moe_summarization.bench_summarization import main
    from shared_utils.stats import seed_test, verdict

    for name in ("dev", "test"):
        (tmp_path / f"{name}.jsonl").write_text("".join(corpus.read_text().splitlines(True)[:3]), encoding="utf-8")
    out = tmp_path / "results"
    argv = ["--data", "local", "--train", str(corpus), "--dev", str(tmp_path / "dev.jsonl"), "--test",
            str(tmp_path / "test.jsonl"), "--size", "tiny", "--max-source-len", "64", "--steps", "2", "--batch-tokens",
            "300", "--select-size", "2", "--seeds", "0", "--runs", str(tmp_path / "runs"), "--out", str(out),
            "--device", "cpu"]
    # two processes share a sweep: each trains its part; the tables cover what is finished, and say what is not
    main([*argv, "--only", "dense_seed0", "t5_seed0"])
    part = json.loads((out / "summarization.json").read_text())
    assert set(part["runs"]) == {"dense_seed0", "t5_seed0"} and not part["complete"]
    assert "moe_top2_seed0" in part["pending"] and "Sweep in progress" in (out / "summarization.md").read_text()
    main(argv)
    result = json.loads((out / "summarization.json").read_text())
    assert result["complete"] and result["pending"] == []
    # a restart reads every finished run back from its record: nothing is trained or decoded again
    monkeypatch.setattr(bench, "summarize", lambda *a, **k: pytest.fail("a scored run was decoded again"))
    monkeypatch.setattr(bench, "train", lambda *a, **k: pytest.fail("a finished run was trained again"))
    main(argv)
    again = json.loads((out / "summarization.json").read_text())
    assert again["models"] == result["models"] and again["comparisons"] == result["comparisons"]
    assert result["budget"]["steps"] == 2 and result["bertscore_model"]
    # every run times itself whole (training, validation, scoring); a record made before that gets its file times
    assert all(r["wall_minutes"] > 0 and r["wall_measured"] == "this process" for r in result["runs"].values())
    record = out / "summarization_runs" / "dense_seed0.json"
    stored = json.loads(record.read_text())
    for field in ("wall_minutes", "wall_measured"):
        del stored["entry"][field]
    record.write_text(json.dumps(stored))
    os.utime(tmp_path / "runs" / "dense_seed0" / "config.json", (record.stat().st_mtime - 90,) * 2)
    main(argv)
    backfilled = json.loads((out / "summarization.json").read_text())["runs"]["dense_seed0"]
    assert backfilled["wall_minutes"] == pytest.approx(1.5) and backfilled["wall_measured"].startswith("file times")
    models = ("moe_top2", "dense", "moe_top1", "moe_hash", "bart", "t5", "llama", "lead1")
    assert tuple(result["models"]) == models
    for model in models:
        for split in ("dev", "test"):
            assert set(result["models"][model][split]) >= {"rouge1", "rouge2", "rougeL", "bertscore_f1"}
    assert set(result["models"]["dense"]["runs"]) == {"dense_seed0"}
    assert result["runs"]["t5_seed0"]["d_ff"] == result["budget"]["peer_ffn"]["t5"]
    for peer in ("bart", "t5", "llama"):  # the peers match our dense model's parameters
        assert abs(result["runs"][f"{peer}_seed0"]["parameters"] / result["runs"]["dense_seed0"]["parameters"] - 1) \
            <= 0.03
    assert all("not_run" in result["baselines"][b] for b in ("bart", "t5", "llama3"))  # no GPU here
    # "ours" against lead-1 and the peers is the model with the best selection-split score, never a test score
    best = result["best_of_ours"]
    ours = ("moe_top2", "dense", "moe_top1", "moe_hash")
    assert best == max(ours, key=lambda m: result["models"][m]["select_rougeL"])
    assert {f"{best}_vs_{peer}" for peer in ("bart", "t5", "llama")} <= set(result["comparisons"])
    entry = result["comparisons"]["dense_vs_lead1"]["dev"]["rougeL"]
    dense_dev = result["models"]["dense"]["runs"]["dense_seed0"]["dev"]["rougeL"]
    assert entry["per_seed"]["dense"] == pytest.approx([dense_dev])
    assert entry["per_seed"]["lead1"] == pytest.approx([result["models"]["lead1"]["dev"]["rougeL"]])
    assert entry["std"]["lead1"] == 0
    test, p = seed_test(entry["per_seed"]["dense"], entry["per_seed"]["lead1"], b_fixed=True)
    assert (entry["seed_test"], entry["verdict"]) == (test, verdict(entry["mean"]["diff"], entry["ci95"], test, p))
    shown = result["examples"]["indices"]
    assert shown == bench.example_indices(3) and set(result["examples"]["rows"][0]["summaries"]) == set(models)
    assert {p.name for p in out.glob("*.png")} == {"summarization_scores.png", "summarization_curves.png",
                                                   "summarization_expert_load.png", "summarization_per_source.png"}
    # a record made under other settings is never mixed into a sweep: one sentence names it
    with pytest.raises(SystemExit):
        main([*argv, "--lr", "0.5", "--only", "dense_seed0"])
    assert capsys.readouterr().err.strip().endswith(
        f"error: {out / 'summarization_runs' / 'dense_seed0.json'} was made with other settings: move it away to run "
        "dense_seed0 again, or run the sweep with the settings it records")


def test_the_headline_pair_gets_every_seed_and_the_others_two():
    from moe_summarization.bench_summarization import runs_to_train

    runs = runs_to_train([0, 1, 2], ["moe_top2", "dense"])
    first_two = ["moe_top2", "dense", "moe_top1", "moe_hash", "bart", "t5", "llama"]
    assert [r for r, _, _ in runs] == [f"{m}_seed{s}" for s in (0, 1) for m in first_two] + [
        "moe_top2_seed2", "dense_seed2"]


A, B_TOK = 4, 5  # two ordinary tokens after the specials <pad> <s> </s> <unk>


@dataclass
class ToyState:
    tokens: torch.Tensor  # (N, t)

    def select(self, index: torch.Tensor) -> "ToyState":
        return ToyState(self.tokens.index_select(0, index))


class ToyDecoder:
    """Next-token probabilities set by hand for each prefix; any other prefix ends (EOS 0.98)."""

    TABLE = {(): {A: 0.6, B_TOK: 0.4},
             (A,): {A: 0.3, B_TOK: 0.3, EOS: 0.4},
             (B_TOK,): {EOS: 0.9, A: 0.05, B_TOK: 0.05}}

    def start(self, src):
        return ToyState(src.new_empty((src.shape[0], 0)))

    def decode_step(self, tokens, state):
        prefix = torch.cat([state.tokens, tokens[:, None]], dim=1)
        logits = torch.full((len(tokens), 6), float("-inf"))  # probability 0 off the table
        for i, row in enumerate(prefix.tolist()):
            for tok, p in self.TABLE.get(tuple(row[1:]), {EOS: 0.98, A: 0.01, B_TOK: 0.01}).items():
                logits[i, tok] = math.log(p)
        return logits, ToyState(prefix)


def test_beam_search_finds_the_beams_worked_out_by_hand():
    # Greedy (beam 1) takes A (0.6) then EOS (0.4): p = 0.24. Beam 2 keeps A and B; at step 2 the candidates
    # are B EOS .36, A EOS .24, A A .18, A B .18: both EOS ones are in the top 2, so the search ends with them.
    from moe_summarization.decoding import Decoder

    src = torch.ones((1, 3), dtype=torch.long)
    assert isinstance(ToyDecoder(), Decoder) and isinstance(build_model(tiny("moe_top2")), Decoder)
    greedy = beam_search(ToyDecoder(), src, beam_size=1, max_len=5, no_repeat_ngram=0, length_penalty=0.0)
    assert greedy[0][0].tokens == [A, EOS]
    hyps = beam_search(ToyDecoder(), src, beam_size=2, nbest=2, max_len=5, no_repeat_ngram=0, length_penalty=0.0)[0]
    assert [h.tokens for h in hyps] == [[B_TOK, EOS], [A, EOS]]
    assert [h.logprob for h in hyps] == pytest.approx([math.log(0.36), math.log(0.24)], abs=1e-6)


def test_cosine_schedule_warms_up_then_decays_to_almost_nothing():
    from moe_summarization.training import cosine_lr

    peak, warm, total = 2e-3, 10, 110
    cos = [cosine_lr(s, peak, warm, total) for s in range(total)]
    assert cos[warm - 1] == pytest.approx(peak) and cos[0] == pytest.approx(peak / warm)
    assert all(a >= b for a, b in zip(cos[warm - 1:], cos[warm:]))  # monotone after the warmup
    assert cos[warm - 1 + 50] == pytest.approx(peak / 2, rel=0.02)  # half-way through the decay
    assert 0 < cos[-1] < 1e-3 * peak  # the last step is tiny, and still a step
