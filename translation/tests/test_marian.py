"""The Hugging Face Marian peer behind our interface: the same loop, checkpoints and decoding as our model.
(test_decoding.py runs every decoding equality test on it too.)"""

import subprocess
import sys

import pytest
import torch

from translation.config import model_config
from translation.decoding import greedy
from translation.inference import load_translator, translate
from translation.marian import MarianPeer
from translation.model import BOS, EOS, PAD, build_model
from translation.tests.test_model import decode_one_by_one
from translation.tests.test_training import ROOT, configs, corpus, metrics  # noqa: F401 (a fixture)
from translation.training import train


def peer() -> MarianPeer:
    torch.manual_seed(2)
    model = build_model(model_config("tiny", arch="marian", vocab_size=40, dropout=0.0)).eval()
    with torch.no_grad():  # larger weights than the init, so the untrained model's outputs differ by row
        for name, p in model.named_parameters():
            if "layer_norm" not in name:
                p.normal_(0, 0.3)
    return model


def batch() -> torch.Tensor:
    src = torch.randint(4, 40, (3, 7), generator=torch.Generator().manual_seed(1))
    src[1, 4:] = PAD
    return src


def test_incremental_decoding_equals_teacher_forcing_with_and_without_the_cache():
    model, src = peer(), batch()
    tgt = torch.cat([torch.full((3, 1), BOS), torch.randint(4, 40, (3, 5))], dim=1)
    with torch.no_grad():
        full = model(src, tgt)  # (3, 6, V)
        for cache in (True, False):
            assert torch.allclose(decode_one_by_one(model, src, tgt, cache), full, atol=1e-5)
        keep = tgt != 5
        assert torch.equal(model(src, tgt, keep), full[keep])


def test_our_greedy_search_writes_what_marian_generate_writes():
    model, src = peer(), batch()
    with torch.no_grad():
        ours = greedy(model, src, torch.full((3,), 12))  # at most 12 tokens, EOS forced at the limit
        theirs = model.hf.generate(input_ids=src, attention_mask=(src != PAD).long(), num_beams=1, do_sample=False,
                                   max_new_tokens=12)[:, 1:].tolist()  # without the start token
    for hyp, ref in zip(ours, theirs):
        assert hyp.tokens == ref[: ref.index(EOS) + 1]  # generate pads a finished row after its EOS
    assert len({tuple(h.tokens) for h in ours}) > 1  # the rows really differ


def test_selecting_rows_keeps_the_old_state_intact():
    model, src = peer(), batch()
    with torch.no_grad():
        state = model.start(src)
        _, state = model.decode_step(torch.full((3,), BOS), state)
        picked = state.select(torch.tensor([2, 0]))
        a, _ = model.decode_step(torch.tensor([7, 7]), picked)
        b, _ = model.decode_step(torch.tensor([7, 7, 7]), state)  # the unselected state still has 3 rows
    assert torch.allclose(a, b[[2, 0]], atol=1e-5)


def test_the_peer_trains_resumes_and_translates_through_our_loop(corpus, tmp_path):  # noqa: F811
    mcfg, tcfg = configs(corpus)
    mcfg = model_config("tiny", arch="marian", dropout=0.1, max_len=16)
    full, cut = tmp_path / "full", tmp_path / "cut"
    train(mcfg, tcfg, full, "cpu")
    train(mcfg, configs(corpus, time_budget_min=1e-9)[1], cut, "cpu")  # one step, then a checkpoint
    train(mcfg, tcfg, cut, "cpu")
    assert [m["loss"] for m in metrics(full)] == [m["loss"] for m in metrics(cut)]
    model, tok, cfg = load_translator(full, torch.device("cpu"))
    assert isinstance(model, MarianPeer) and cfg.arch == "marian"
    assert len(translate(model, tok, cfg, ["kissa koira", "talo"], torch.device("cpu"))) == 2


def test_arch_is_a_flag_and_is_checked():
    out = subprocess.run([sys.executable, "-m", "translation.train", "--out", "x", "--arch", "gpt"], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 2  # refused where the flag is read, with the choices
    assert out.stderr.strip() == ("error: argument --arch: invalid choice: 'gpt' (choose from 'ours', 'marian') "
                                  "(see --help)")
    with pytest.raises(Exception, match="arch must be one of"):
        model_config("tiny", arch="gpt")


def test_a_flag_the_marian_peer_would_ignore_is_refused(capsys):
    from shared_utils.testing import assert_one_line_error, run_cli
    from translation import train as train_cli

    assert_one_line_error(run_cli(train_cli.main, ["--out", "x", "--arch", "marian", "--positional", "sinusoidal"],
                                  capsys), "--positional would do nothing with --arch marian")
