"""Translate a file with a trained checkpoint and score it: BLEU, chrF++ and TER with sacrebleu signatures.

    python translation/eval.py --checkpoint runs/mt-rope --input ../shared/data/translation/dev.tatoeba.fi-en.tsv \\
        --output hyps.txt

``--input`` is a TSV (finnish<TAB>english: scored against the English side) or a plain file of Finnish
sentences (translated only). The model, its config and tokenizer come from the checkpoint alone.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from shared_utils.checkpoint import load_checkpoint, load_latest
from shared_utils.data import Pair, load_parallel
from shared_utils.errors import UserError, cli_main
from shared_utils.metrics import translation_scores
from shared_utils.runtime import pick_device
from translation.config import ModelConfig
from translation.data import collate, encode_pairs, token_batches
from translation.decoding import greedy, length_cap
from translation.model import build_model
from translation.tokenizer import decode, load_tokenizer


def load_translator(path: str | Path, device: torch.device):
    """(model, tokenizer, config) from a checkpoint folder, or a run folder's best (else latest) checkpoint."""
    path = Path(path)
    ckpt = (load_latest(path, "best") or load_latest(path)) if (path / "checkpoints").is_dir() else None
    ckpt = ckpt or load_checkpoint(path)
    if "model" not in ckpt.config or not (ckpt.path / "tokenizer.json").is_file():
        raise UserError(f"{ckpt.path} is not a translation checkpoint (no model config or tokenizer.json)")
    cfg = ModelConfig(**ckpt.config["model"])
    model = build_model(cfg)
    ckpt.load_weights(model)
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


def translate(model, tok, cfg: ModelConfig, sources: list[str], device, batch_tokens: int = 4000) -> list[str]:
    """Greedy translations in input order; empty lines give empty outputs."""
    pairs = [Pair(s if s.strip() else ".", ".") for s in sources]
    data = encode_pairs(tok, pairs, cfg.max_len)
    hyps = [""] * len(sources)
    for idx in token_batches(data, batch_tokens, seed=0, epoch=0):
        src, _ = collate(data, idx, device)
        for i, ids in zip(idx, greedy(model, src, length_cap(src, cfg.max_len))):
            hyps[i] = decode(tok, ids) if sources[i].strip() else ""
    return hyps


@cli_main
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="run folder (best checkpoint) or checkpoint folder")
    p.add_argument("--input", required=True, help="TSV finnish<TAB>english, or plain Finnish sentences")
    p.add_argument("--output", type=Path, default=None, help="write hypotheses here, one per line")
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    device = pick_device(args.device)
    model, tok, cfg = load_translator(args.checkpoint, device)
    sources, refs = read_input(args.input)
    hyps = translate(model, tok, cfg, sources, device)
    if args.output:
        args.output.write_text("\n".join(hyps) + "\n", encoding="utf-8")
    if refs is not None:
        scores = translation_scores(hyps, refs)
        for name, score in scores.items():
            print(f"{name.upper():5s} {score.score:6.2f}  {score.signature}")
        print(json.dumps({name: score.score for name, score in scores.items()}))


if __name__ == "__main__":
    main()
