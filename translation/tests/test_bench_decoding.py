"""The decoding study's CLI at toy size: the speed comparison alone, the peer it times, its errors (and the
deployment study's, which finds its default checkpoint the same way)."""

import json

import torch


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
    decoding_main(["--speed-only", "--preset", "tiny", "--repeats", "2", "--profile-calls", "1", "--out", str(tmp_path),
                   "--device", "cpu"])
    speed = json.loads((tmp_path / "decoding_speed.json").read_text())
    assert speed["model"]["preset"] == "tiny" and speed["side_by_side"]["batch"] == 32
    assert speed["side_by_side"]["profile_calls"] == 1
    for key in ("kv_cache_speedup", "greedy_throughput_ratio_vs_hf_generate", "beam_throughput_ratio_vs_hf_generate"):
        assert speed[key] == speed["side_by_side"][key] and speed[key]["repeats"] == 2
    assert {p.name for p in tmp_path.iterdir()} == {"decoding_speed.json", "decoding_speed.md", "decoding_speed.png"}


def test_the_deployment_study_names_a_training_file_without_a_checkpoint_as_the_decoding_study_does(
        tmp_path, monkeypatch, capsys):
    from shared_utils.testing import run_cli
    from translation import bench_deploy

    monkeypatch.setattr(bench_deploy, "RESULTS", tmp_path)
    argv = ["--out", str(tmp_path / "out")]
    assert run_cli(bench_deploy.main, argv, capsys) == (
        2, "", f"error: {tmp_path / 'training.json'} not found: run translation/bench_training.py first, or pass "
               "--checkpoint\n")
    (tmp_path / "training.json").write_text(json.dumps({"best_scheme": "rope", "steps": 2000}))  # the old format
    assert run_cli(bench_deploy.main, argv, capsys) == (
        2, "", f"error: {tmp_path / 'training.json'} names no checkpoint (an older bench_training wrote it): rerun "
               "translation/bench_training.py, or pass --checkpoint\n")
    assert not (tmp_path / "out").exists()
