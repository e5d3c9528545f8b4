"""The CTranslate2 export against the model it came from, for every position scheme and the Marian peer: the real
engine on tiny trained checkpoints, nothing mocked. The exported model must give every target token the
log-probability ours gives it, and the same greedy output token for token; ``translate.py --engine
ctranslate2`` must serve it with the same input handling and one-sentence errors."""

import io
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from shared_utils.testing import assert_one_line_error, run_cli
from translation import export_ctranslate2 as export_cli
from translation import train as train_cli
from translation import translate as translate_cli
from translation.data import Pair, encode_pairs
from translation.decoding import Strategy
from translation.deploy import Engine, export
from translation.inference import TorchTranslator

WORDS = [("yksi", "one"), ("kaksi", "two"), ("kolme", "three"), ("kissa", "cat"), ("koira", "dog"),
         ("talo", "house")]
PAIRS = [Pair(f"{a} {b} {c}", f"{x} {y} {z}") for a, x in WORDS for b, y in WORDS for c, z in WORDS[:2]]
SYSTEMS = {"sinusoidal": ["--positional", "sinusoidal"], "relative_bias": ["--positional", "relative_bias"],
           "rope": ["--positional", "rope"], "marian": ["--arch", "marian"]}
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """One tiny run per system, trained long enough (60 steps) that greedy search says more than EOS."""
    root = tmp_path_factory.mktemp("deploy")
    (root / "train.tsv").write_text("".join(f"{p.src}\t{p.tgt}\n" for p in PAIRS), encoding="utf-8")
    out = {}
    for name, extra in SYSTEMS.items():
        out[name] = root / name
        train_cli.main(["--out", str(out[name]), "--preset", "tiny", "--max-len", "16", "--vocab-size", "300",
                        "--train", str(root / "train.tsv"), "--dev", str(root / "train.tsv"), "--batch-tokens",
                        "300", "--steps", "60", "--eval-every", "60", "--dev-limit", "4", "--warmup", "5",
                        "--lr", "3e-3", "--select-size", "8", "--device", "cpu", *extra])
    return out


@pytest.fixture(scope="module")
def exports(runs, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("exports")
    for name, run in runs.items():
        export(run, root / name)
    return {name: root / name for name in runs}


@pytest.mark.parametrize("name", list(SYSTEMS))
def test_the_export_scores_every_token_as_ours_does(runs, exports, name):
    ours, engine = TorchTranslator(runs[name], CPU), Engine(exports[name])
    data = encode_pairs(ours.tok, PAIRS[:8], ours.cfg.max_len)
    # teacher forcing: CTranslate2 scores the target (it adds EOS itself) given the source tokens
    scored = engine.translator.score_batch([[engine.vocab[t] for t in s] for s in data.src],
                                           [[engine.vocab[t] for t in t_ids[1:-1]] for t_ids in data.tgt])
    for src, tgt, result in zip(data.src, data.tgt, scored):
        with torch.no_grad():
            logprobs = ours.model(torch.tensor([src]), torch.tensor([tgt[:-1]])).log_softmax(-1)[0]  # (S, V)
        expected = logprobs.gather(1, torch.tensor(tgt[1:])[:, None])[:, 0]
        assert torch.allclose(torch.tensor(result.log_probs), expected, atol=1e-4), name


@pytest.mark.parametrize("name", list(SYSTEMS))
def test_greedy_outputs_are_token_identical_and_so_are_length_limits(runs, exports, name):
    ours, engine = TorchTranslator(runs[name], CPU), Engine(exports[name])
    sources = [p.src for p in PAIRS] + ["", "kissa " * 20]  # an empty line, and one the limit cuts
    for strategy in (Strategy(), Strategy(max_len_ratio=0.5, max_len_extra=0)):
        expected, cut = ours.hypotheses(sources, strategy)
        found, engine_cut = engine.hypotheses(sources, strategy)
        assert [[h.tokens for h in row] for row in found] == [[h.tokens for h in row] for row in expected]
        assert engine_cut == cut
    assert max(len(row[0].tokens) for row in expected if row) > 1, "the model only says EOS: a test that cannot fail"
    # the score is the summed log-probability, as ours, where EOS was chosen (at the limit ours forces it)
    expected, found = ours.hypotheses(sources[:-1])[0], engine.hypotheses(sources[:-1])[0]  # limits: 16 (max_len)
    ended = [(a[0].logprob, b[0].score) for a, b in zip(expected, found) if a and len(a[0].tokens) < 16]
    assert ended and [b for _, b in ended] == pytest.approx([a for a, _ in ended], abs=1e-4)


def test_int8_export_is_smaller_and_translates(runs, exports, tmp_path):
    export(runs["rope"], tmp_path / "int8", quantization="int8")
    assert (tmp_path / "int8" / "model.bin").stat().st_size < (exports["rope"] / "model.bin").stat().st_size
    found, _ = Engine(tmp_path / "int8").hypotheses([p.src for p in PAIRS[:4]])
    assert all(row and row[0].tokens[-1] == 2 for row in found)


def test_translate_serves_an_export_as_it_serves_the_checkpoint(runs, exports, monkeypatch, capsys):
    lines = "kissa koira yksi\n\nkolme talo kaksi\n"
    outputs = {}
    for argv in (["--checkpoint", str(runs["rope"])],
                 ["--checkpoint", str(exports["rope"]), "--engine", "ctranslate2"]):
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(lines.encode())))
        code, out, err = run_cli(translate_cli.main, argv, capsys)
        assert code == 0, err
        outputs[argv[-1]] = out
    assert outputs["ctranslate2"] == outputs[str(runs["rope"])]
    assert len(outputs["ctranslate2"].split("\n")) == 4  # three lines in, three out (the empty one kept)


def test_engines_and_folders_that_do_not_match_get_one_sentence(runs, exports, tmp_path, capsys):
    run, exported = str(runs["rope"]), str(exports["rope"])
    assert_one_line_error(run_cli(translate_cli.main, ["--checkpoint", run, "--engine", "ctranslate2"], capsys),
                          "is not a CTranslate2 export", "export_ctranslate2.py --checkpoint")
    assert_one_line_error(run_cli(translate_cli.main, ["--checkpoint", exported], capsys),
                          "is a CTranslate2 export: pass --engine ctranslate2")
    assert_one_line_error(run_cli(translate_cli.main, ["--checkpoint", run, "--compute-type", "int8"], capsys),
                          "--compute-type applies to --engine ctranslate2 only")
    assert_one_line_error(run_cli(translate_cli.main, ["--checkpoint", str(tmp_path / "nowhere"), "--engine",
                                                      "ctranslate2"], capsys), "does not exist")
    damaged = tmp_path / "damaged"
    shutil.copytree(exported, damaged)
    (damaged / "model.bin").write_bytes((damaged / "model.bin").read_bytes()[:1000])
    assert_one_line_error(run_cli(translate_cli.main, ["--checkpoint", str(damaged), "--engine", "ctranslate2"],
                                  capsys), "CTranslate2 cannot load this export")
    (damaged / "tokenizer.json").unlink()
    assert_one_line_error(run_cli(translate_cli.main, ["--checkpoint", str(damaged), "--engine", "ctranslate2"],
                                  capsys), "the export is damaged or incomplete", "export the checkpoint again")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    assert_one_line_error(run_cli(export_cli.main, ["--checkpoint", run, "--out", str(tmp_path / "notes")], capsys),
                          "not a CTranslate2 export; choose another folder")
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine"
    assert_one_line_error(run_cli(export_cli.main, ["--checkpoint", run, "--out", exported], capsys),
                          "holds an export already; pass --force")
    code, out, err = run_cli(export_cli.main, ["--checkpoint", run, "--out", exported, "--force"], capsys)
    assert code == 0 and "ours, rope, float32" in out, err
    assert sorted(p.name for p in Path(exported).parent.iterdir()) == sorted(SYSTEMS)  # no staging left behind


def test_the_deploy_benchmark_proves_before_it_times_and_writes_every_table(runs, tmp_path, capsys):
    from translation import bench_deploy

    data = tmp_path / "dev.tsv"
    data.write_text("".join(f"{p.src}\t{p.tgt}\n" for p in PAIRS[:12]), encoding="utf-8")
    code, out, err = run_cli(bench_deploy.main, [
        "--checkpoint", str(runs["rope"]), "--peer", str(runs["marian"]), "--dev", str(data), str(data),
        "--repeats", "1", "--latency-sentences", "2", "--out", str(tmp_path / "out"),
        "--exports", str(tmp_path / "exports")], capsys)
    assert code == 0, err
    result = json.loads((tmp_path / "out" / "deploy.json").read_text())
    assert all(p["identical_share"] == 1.0 and p["holds"] for p in result["proof"].values())
    assert set(result["quality"]) == {"ours", "ours_int8_dynamic", "peer_torch", "ct2_peer_float32", "ct2_peer_int8",
                                      "ct2_ours_float32", "ct2_ours_int8"}
    assert result["quality"]["ct2_ours_float32"] == result["quality"]["ours"]  # identical outputs, identical scores
    assert "ours_greedy_time_vs_ct2_ours_float32" in result["ratios"]
    assert (tmp_path / "out" / "deploy.md").is_file() and (tmp_path / "out" / "deploy.png").is_file()
    code, _, err = run_cli(bench_deploy.main, ["--checkpoint", str(runs["marian"]), "--peer", str(runs["rope"]),
                                               "--dev", str(data), "--out", str(tmp_path / "o2")], capsys)
    assert_one_line_error((code, "", err), "--checkpoint must be ours and --peer the Marian peer")
