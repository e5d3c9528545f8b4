"""Translate a file with a trained checkpoint and score it: BLEU, chrF++ and TER with sacrebleu signatures.

    python translation/eval.py --checkpoint runs/mt-rope --input ../shared/data/translation/dev.tatoeba.fi-en.tsv \\
        --output hyps.txt --strategy beam --beam-size 4

``--input`` is a TSV (finnish<TAB>english: scored against the English side) or a plain file of Finnish
sentences (translated only). The model, its config and tokenizer come from the checkpoint alone.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from shared_utils.batching import collate, token_batches
from shared_utils.checkpoint import load_best
from shared_utils.data import Pair, load_parallel
from shared_utils.errors import UserError, cli_main
from shared_utils.metrics import translation_scores
from shared_utils.runtime import pick_device
from translation.config import ModelConfig
from translation.data import encode_pairs
from translation.decoding import Hypothesis, Strategy, add_strategy_args, strategy_from_args
from translation.model import build_model
from translation.tokenizer import decode, load_tokenizer


def load_translator(path: str | Path, device: torch.device):
    """(model, tokenizer, config) from a checkpoint folder, or a run folder's best (else latest) checkpoint."""
    ckpt = load_best(path)
    if "model" not in ckpt.config or not (ckpt.path / "tokenizer.json").is_file():
        raise UserError(f"{ckpt.path} is not a translation checkpoint (no model config or tokenizer.json)")
    try:
        cfg = ModelConfig(**ckpt.config["model"])
        model = build_model(cfg)
        ckpt.load_weights(model)
    except (TypeError, RuntimeError) as err:  # a config field or weight this code does not know
        first = str(err).strip().splitlines()[0]
        raise UserError(f"{ckpt.path} is not compatible with this version of translation/ ({first})") from None
    return model.to(device).eval(), load_tokenizer(ckpt.read_text("tokenizer.json")), cfg


def read_input(path: str) -> tuple[list[str], list[str] | None]:
    """Sources and, for a TSV or hub dataset, references."""
    if path.startswith("hf:"):
        pairs = load_parallel(path, local_hint="pass --input PATH to a local TSV (finnish<TAB>english)")
        return [p.src for p in pairs], [p.tgt for p in pairs]
    file = Path(path)
    if not file.is_file():
        raise UserError(f"input not found: {path}")
    first = file.open(encoding="utf-8", errors="replace").readline()
    if "\t" in first:
        pairs = load_parallel(path)
        return [p.src for p in pairs], [p.tgt for p in pairs]
    return [line.rstrip("\n") for line in file.open(encoding="utf-8")], None


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


def translate(model, tok, cfg: ModelConfig, sources: list[str], device, strategy: Strategy | None = None,
              batch_tokens: int = 4000) -> list[str]:
    """The best translation of each source, in input order; empty lines give empty outputs."""
    hyps, _ = hypotheses(model, tok, cfg, sources, device, strategy, batch_tokens)
    return [decode(tok, h[0].tokens) if h else "" for h in hyps]


@cli_main
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="run folder (best checkpoint) or checkpoint folder")
    p.add_argument("--input", required=True, help="TSV finnish<TAB>english, or plain Finnish sentences")
    p.add_argument("--output", type=Path, default=None, help="write hypotheses here, one per line")
    p.add_argument("--device", default="auto")
    add_strategy_args(p)
    args = p.parse_args(argv)
    strategy = strategy_from_args(args)
    device = pick_device(args.device)
    model, tok, cfg = load_translator(args.checkpoint, device)
    sources, refs = read_input(args.input)
    hyps = translate(model, tok, cfg, sources, device, strategy)
    if args.output:
        args.output.write_text("\n".join(hyps) + "\n", encoding="utf-8")
    if refs is not None:
        scores = translation_scores(hyps, refs)
        for name, score in scores.items():
            print(f"{name.upper():5s} {score.score:6.2f}  {score.signature}")
        print(json.dumps({name: score.score for name, score in scores.items()}))


if __name__ == "__main__":
    main()
