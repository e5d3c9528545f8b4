"""Translating with a trained checkpoint, for every caller (eval.py, translate.py, the demo and the benchmarks):
rebuild the model and tokenizer from a checkpoint alone, and translate sentences in token-budget batches with
any decoding strategy."""

from __future__ import annotations

from pathlib import Path

import torch

from shared_utils.batching import collate, token_batches
from shared_utils.checkpoint import load_best
from shared_utils.errors import UserError
from translation.config import ModelConfig
from translation.data import Pair, encode_pairs
from translation.decoding import Hypothesis, Strategy
from translation.deploy import COMPUTE_TYPES, EXPORT_FILE, Engine
from translation.model import restore_model
from translation.tokenizer import decode, load_tokenizer


def load_translator(path: str | Path, device: torch.device):
    """(model, tokenizer, config) from a checkpoint folder, or a run folder's best (else latest) checkpoint."""
    ckpt = load_best(path)
    model, cfg = restore_model(ckpt, hint="pass a translation run folder or checkpoint")
    if not (ckpt.path / "tokenizer.json").is_file():
        raise UserError(f"{ckpt.path} has no tokenizer.json, so it cannot translate; retrain into a new --out")
    return model.to(device).eval(), load_tokenizer(ckpt.read_text("tokenizer.json")), cfg


def hypotheses(model, tok, cfg: ModelConfig, sources: list[str], device, strategy: Strategy | None = None,
               batch_tokens: int = 4000) -> tuple[list[list[Hypothesis]], int]:
    """Hypotheses per source in input order (empty lines get none), and how many sources were truncated.

    Batches are built to a token budget over sorted lengths; sampling draws from one generator seeded by the
    strategy, so the same seed and input give the same samples.
    """
    strategy = strategy or Strategy()
    live = [i for i, s in enumerate(sources) if s.strip()]
    data = encode_pairs(tok, [Pair(sources[i], ".") for i in live], cfg.max_len)
    out: list[list[Hypothesis]] = [[] for _ in sources]
    generator = strategy.generator(device)
    rows_per_sentence = strategy.beam_size if strategy.strategy == "beam" else 1
    for idx in token_batches(data, max(batch_tokens // rows_per_sentence, 2 * cfg.max_len), seed=0, epoch=0):
        src, _ = collate(data, idx, device)
        for i, hyps in zip(idx, strategy.run(model, src, cfg.max_len, generator)):
            out[live[i]] = hyps
    return out, data.truncated


class TorchTranslator:
    """Our PyTorch model (or the Marian peer) behind the interface a CTranslate2 ``deploy.Engine`` offers too, so
    eval.py and translate.py serve either engine by one code path."""

    def __init__(self, path: str | Path, device: torch.device):
        self.model, self.tok, self.cfg = load_translator(path, device)
        self.device = device

    def hypotheses(self, sources: list[str], strategy: Strategy | None = None, batch_tokens: int = 4000
                   ) -> tuple[list[list[Hypothesis]], int]:
        return hypotheses(self.model, self.tok, self.cfg, sources, self.device, strategy, batch_tokens)


ENGINES = ("torch", "ctranslate2")


def add_engine_args(parser) -> None:
    parser.add_argument("--engine", default="torch", choices=ENGINES, help=(
        "torch: a run or checkpoint folder; ctranslate2: a folder written by translation/export_ctranslate2.py"))
    parser.add_argument("--compute-type", default=None, choices=COMPUTE_TYPES, help=(
        "--engine ctranslate2 only: compute as the export stores its weights (default), or convert at load"))


def open_translator(path: Path, engine: str, device: torch.device, compute_type: str | None = None):
    """The translator of a run or checkpoint folder (``torch``) or of a CTranslate2 export (``ctranslate2``);
    a folder of the other kind is named as such, with the flag that reads it."""
    if engine == "ctranslate2":
        return Engine(path, compute_type or "default", device=device.type)
    if compute_type is not None:
        raise UserError("--compute-type applies to --engine ctranslate2 only")
    if (path / EXPORT_FILE).is_file():
        raise UserError(f"{path} is a CTranslate2 export: pass --engine ctranslate2")
    return TorchTranslator(path, device)


def translate(model, tok, cfg: ModelConfig, sources: list[str], device, strategy: Strategy | None = None,
              batch_tokens: int = 4000) -> list[str]:
    """The best translation of each source, in input order; empty lines give empty outputs."""
    hyps, _ = hypotheses(model, tok, cfg, sources, device, strategy, batch_tokens)
    return [decode(tok, h[0].tokens) if h else "" for h in hyps]
