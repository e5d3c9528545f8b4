"""What the translation studies share (``bench_training.py``, ``bench_recipe.py``, ``bench_decoding.py``,
``bench_deploy.py``): the systems they compare, the weights a run is scored by, scoring on the selection split,
and the side-by-side timing's source batch and forced-length ``generate()``."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch

from shared_utils.checkpoint import save_average
from shared_utils.data import shared_data
from shared_utils.errors import UserError
from shared_utils.timing import Timing
from translation.config import TrainConfig
from translation.decoding import Strategy
from translation.inference import load_translator, translate
from translation.metrics import translation_scores
from translation.model import BOS, EOS, PAD

LOCAL = shared_data("translation")
# the dev sets every study reports (never selects on): Tatoeba and newstest 2018, as OPUS-MT is compared
LOCAL_DEV = [f"{LOCAL}/dev.tatoeba.fi-en.tsv", f"{LOCAL}/dev.newstest2018.fi-en.tsv"]
SYSTEMS: dict[str, dict] = {  # name -> the ModelConfig fields it sets over the preset
    "rope": dict(positional="rope"),
    "relative_bias": dict(positional="relative_bias"),
    "sinusoidal": dict(positional="sinusoidal"),
    "marian_peer": dict(arch="marian"),
}
RECIPE_SYSTEMS = ("rope", "marian_peer")  # the recipe grid trains each recipe on these two


def best_checkpoint(results: Path) -> str:
    """The checkpoint of the best system's first seed, as ``results/training.json`` names it (the decoding and
    deployment studies' default), or one sentence saying why there is none."""
    training = results / "training.json"
    if not training.is_file():
        raise UserError(f"{training} not found: run translation/bench_training.py first, or pass --checkpoint")
    written = json.loads(training.read_text(encoding="utf-8"))
    checkpoint = written.get("best_checkpoint")
    if checkpoint is None and "seeds" not in written:
        raise UserError(f"{training} names no checkpoint (an older bench_training wrote it): rerun "
                        "translation/bench_training.py, or pass --checkpoint")
    if checkpoint is None:  # its runs were scored in earlier sittings, and their folders are gone
        best, seed = written["best_scheme"], written["seeds"][0]
        raise UserError(f"{training} names no checkpoint: no run of its best system ({best}) was on the machine "
                        f"that wrote it; delete {results / 'training_runs'}/{best}_seed{seed}.json and rerun "
                        "translation/bench_training.py to train one here, or pass --checkpoint")
    return checkpoint


def parameters(model: torch.nn.Module) -> int:
    """Distinct trainable parameters (a tied matrix counts once; Marian's fixed sinusoidal table not at all)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters() if p.requires_grad}.values())


def scored_model(run: Path, average: int, device) -> tuple:
    """The weights a run is scored by, and their checkpoint folder: its best checkpoint (chosen on the selection
    split while training) or, under an averaging recipe, the mean of its last ``average`` checkpoints, published as
    the run's ``average_last<n>`` checkpoint so that bench_decoding, eval.py and translate.py load the same weights."""
    model, tok, mcfg = load_translator(run, device)
    checkpoint = run if average == 1 else save_average(run, average, model)
    return model, tok, mcfg, checkpoint


def greedy_select(model, tok, mcfg, select: list, device) -> tuple[dict, list[str]]:
    """Greedy BLEU / chrF++ on the selection split, and the translations (for a paired bootstrap)."""
    hyps = translate(model, tok, mcfg, [p.src for p in select], device, Strategy("greedy"))
    return score(hyps, [p.tgt for p in select]), hyps


def stale_run(run: Path) -> str:
    """The error for a run scored under other settings: train.py would resume it (a changed schedule is
    accepted), so its old weights would be reported under the new settings."""
    return (f"{run} was trained and scored with other settings than this command's; pass a new --runs folder "
            "(or move that run away) to train it afresh")


def settings(cfg: TrainConfig) -> dict:
    """What a run's scores depend on: every training field but the data paths (the same for every run)."""
    return {k: v for k, v in asdict(cfg).items() if k not in ("train", "dev")}


def score(hyps: list[str], refs: list[str]) -> dict[str, float]:
    s = translation_scores(hyps, refs)
    return {"bleu": s["bleu"].score, "chrf": s["chrf"].score}


def matmul_ceiling(reference: Timing, profiled: dict) -> float:
    """How fast a candidate could at most become against ``reference``: the reference's median time over the
    candidate's own matmul + attention time (:func:`time_by_op_family`). Where both sides do the same products,
    that is what remains when every other cost (element-wise ops, copies, Python) is cut to nothing."""
    return reference.median_ms / (profiled["matmul"]["ms"] + profiled["attention"]["ms"])


def source_batch(tok, sources: list[str], max_len: int, device=None) -> torch.Tensor:
    """(B, L) source ids of ``sources`` as the model reads them: at most ``max_len`` - 1 tokens, EOS, PAD after."""
    rows = [e.ids[: max_len - 1] + [EOS] for e in tok.encode_batch(sources)]
    src = torch.full((len(rows), max(map(len, rows))), PAD, dtype=torch.long)
    for i, r in enumerate(rows):
        src[i, : len(r)] = torch.tensor(r)
    return src if device is None else src.to(device)


def hf_generate_forced(hf, src: torch.Tensor, num_beams: int, new_tokens: int):
    """A call of ``MarianMTModel.generate`` that emits exactly ``new_tokens`` tokens per sentence (greedy or beam
    search, length penalty 1, early stopping), for timing beside a decoder forced to the same length."""
    def run():
        with torch.no_grad():
            out = hf.generate(input_ids=src, attention_mask=src != PAD, num_beams=num_beams, do_sample=False,
                              max_new_tokens=new_tokens, min_new_tokens=new_tokens, length_penalty=1.0,
                              early_stopping=True, forced_eos_token_id=EOS, decoder_start_token_id=BOS)
        assert out.shape[1] == new_tokens + 1, out.shape  # BOS + the forced length: the same work as ours
    return run
