"""The BART / T5 / Llama architecture peers: parameter match, our decoding equal to transformers' own, padding
and caching that change nothing, and a peer trained, saved and reloaded by our loop."""

import pytest
import torch

from moe_summarization.config import SummarizerConfig, summarizer_config
from moe_summarization.data import load_documents
from moe_summarization.decoding import beam_search
from moe_summarization.inference import load_summarizer, summarize
from moe_summarization.model import build_model
from moe_summarization.peers import PARAM_TOLERANCE, left_align, parameter_count
from moe_summarization.tokenizer import BOS, EOS, PAD
from shared_utils.errors import UserError

PEERS = ("bart", "t5", "llama")


def documents(vocab: int, seed: int = 0) -> torch.Tensor:
    """Three right-padded documents of lengths 10, 7 and 4, EOS last."""
    src = torch.randint(4, vocab, (3, 10), generator=torch.Generator().manual_seed(seed))
    for row, length in enumerate((10, 7, 4)):
        src[row, length - 1] = EOS
        src[row, length:] = PAD
    return src


def peer(arch: str, size: str = "tiny"):
    """A peer whose weight matrices are drawn with std 0.3: at init a tiny model writes the same tokens for every
    document, which would let a wrong cache, mask or position pass unseen."""
    torch.manual_seed(0)
    cfg = summarizer_config(size, "dense", arch=arch, dropout=0.0)
    model = build_model(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.3)
    return model, cfg


@pytest.mark.parametrize("size", ["tiny", "small", "base"])
@pytest.mark.parametrize("arch", PEERS)
def test_each_peer_has_our_dense_models_parameter_count(arch, size):
    dense = parameter_count(build_model, summarizer_config(size, "dense"))
    cfg = summarizer_config(size, "dense", arch=arch)
    assert cfg.arch == arch and not cfg.copy and cfg.moe is None
    assert abs(parameter_count(build_model, cfg) / dense - 1) <= PARAM_TOLERANCE


def test_left_align_moves_the_padding_to_the_front():
    src = torch.tensor([[5, 6, 2, 0, 0], [7, 2, 0, 0, 0], [4, 5, 6, 7, 2]])
    assert left_align(src).tolist() == [[0, 0, 5, 6, 2], [0, 0, 0, 7, 2], [4, 5, 6, 7, 2]]


@pytest.mark.parametrize("arch", PEERS)
def test_incremental_decoding_equals_teacher_forcing_and_padding_changes_nothing(arch):
    model, cfg = peer(arch)
    src = documents(cfg.vocab_size)
    tgt = torch.randint(4, cfg.vocab_size, (3, 6), generator=torch.Generator().manual_seed(1))
    tgt[:, 0] = BOS
    with torch.no_grad():
        full, aux, stats = model(src, tgt)
        state, steps = model.start(src), []
        for j in range(tgt.shape[1]):
            logits, state = model.decode_step(tgt[:, j], state)
            steps.append(logits)
        alone = [model(src[i: i + 1, : int((src[i] != PAD).sum())], tgt[i: i + 1])[0][0] for i in range(3)]
    assert full.shape == (3, 6, cfg.vocab_size) and float(aux) == 0.0 and stats == []
    torch.testing.assert_close(torch.stack(steps, 1), full, atol=1e-5, rtol=1e-4)
    for i in range(3):
        torch.testing.assert_close(alone[i], full[i], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("arch", PEERS)
def test_our_greedy_search_writes_what_transformers_generate_writes(arch):
    model, cfg = peer(arch)
    src = documents(cfg.vocab_size, seed=3)
    with torch.no_grad():
        ours = [hyps[0].tokens for hyps in beam_search(model, src, beam_size=1, max_len=8, no_repeat_ngram=0)]
        if arch == "llama":  # the document, left-padded, then the separator: generation continues from there
            ids = torch.cat([left_align(src), torch.full((3, 1), BOS)], dim=1)
            keep = (ids != PAD).long()
            out = model.hf.generate(input_ids=ids, attention_mask=keep, do_sample=False, max_new_tokens=8,
                                    eos_token_id=EOS, pad_token_id=PAD)[:, ids.shape[1]:]
        else:
            out = model.hf.generate(input_ids=src, attention_mask=(src != PAD).long(), do_sample=False, num_beams=1,
                                    max_new_tokens=8, decoder_start_token_id=BOS, eos_token_id=EOS,
                                    pad_token_id=PAD, forced_eos_token_id=None)[:, 1:]
    # both stop at EOS; at the length limit ours ends with a forced EOS where generate() writes an 8th token
    for mine, row in zip(ours, out.tolist()):
        assert mine[-1] == EOS and mine[:-1] == row[: len(mine) - 1]
        assert len(mine) == 8 or row[len(mine) - 1] == EOS
    assert len({tuple(row) for row in ours}) > 1  # the documents matter


def test_peer_flags_that_would_do_nothing_are_refused():
    with pytest.raises(UserError, match="--arch t5 is a dense peer: it takes --variant dense, not 'moe_top2'"):
        summarizer_config("tiny", "moe_top2", arch="t5")
    with pytest.raises(UserError, match="--arch bart is a dense peer without a copy head"):
        SummarizerConfig(arch="bart", copy=True)
    with pytest.raises(UserError, match="--arch must be one of ours, bart, t5, llama, got 'gpt'"):
        SummarizerConfig(arch="gpt")
    # BART's learned positions alone outgrow a tiny model's FFN budget: one sentence, not a mismatched peer
    with pytest.raises(UserError, match=r"--arch bart cannot match our dense model's [\d,]+ parameters within 3%"):
        summarizer_config("tiny", "dense", arch="bart", max_source_len=384)


@pytest.mark.parametrize("arch", ["t5", "llama"])
def test_a_peer_trains_in_our_loop_and_is_rebuilt_from_its_checkpoint(arch, tmp_path):
    from moe_summarization.config import SumTrainConfig
    from moe_summarization.training import train

    data = "moe_summarization/samples/train.jsonl"
    cfg = SumTrainConfig(train=data, dev=None, batch_tokens=400, steps=6, eval_every=3, warmup=1, select_size=8,
                         lr=3e-3)
    info = train(summarizer_config("tiny", "dense", arch=arch), cfg, tmp_path / "run", "cpu")
    assert info["step"] == 6
    model, tok, mcfg = load_summarizer(tmp_path / "run", torch.device("cpu"))
    assert mcfg.arch == arch and type(model).__name__ == ("DecoderOnlyPeer" if arch == "llama" else "Seq2SeqPeer")
    docs = load_documents("moe_summarization/samples/dev.jsonl").records[:3]
    first = summarize(model, tok, mcfg, docs, torch.device("cpu"), beam_size=2)
    assert first == summarize(model, tok, mcfg, docs[:1], torch.device("cpu"), beam_size=2) + summarize(
        model, tok, mcfg, docs[1:], torch.device("cpu"), beam_size=2)  # batching changes nothing
