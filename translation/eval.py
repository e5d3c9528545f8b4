"""Translate a file with a trained checkpoint and score it: BLEU, chrF++ and TER with sacrebleu signatures.

    python translation/eval.py --checkpoint runs/mt-rope --input ../shared/data/translation/dev.tatoeba.fi-en.tsv \\
        --output hyps.txt --strategy beam --beam-size 4

``--input`` is a TSV (finnish<TAB>english: scored against the English side) or a plain file of Finnish
sentences (translated only; the translations go to ``--output``, else to stdout). ``--format auto`` decides
from every non-empty line: all with a tab is a TSV, none is text, a mix is an error naming the first line
of each kind. The model, its config and tokenizer come from the checkpoint alone.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from shared_utils.batching import collate, token_batches
from shared_utils.checkpoint import load_best
from shared_utils.cli import Parser
from shared_utils.data import Pair, load_parallel, read_text_lines
from shared_utils.errors import UserError, cli_main
from shared_utils.metrics import translation_scores
from shared_utils.runtime import pick_device
from translation.config import ModelConfig
from translation.data import encode_pairs
from translation.decoding import Hypothesis, Strategy, add_strategy_args, strategy_from_args
from translation.model import restore_model
from translation.tokenizer import decode, load_tokenizer

FORMATS = ("auto", "tsv", "text")


def load_translator(path: str | Path, device: torch.device):
    """(model, tokenizer, config) from a checkpoint folder, or a run folder's best (else latest) checkpoint."""
    ckpt = load_best(path)
    model, cfg = restore_model(ckpt, hint="pass a translation run folder or checkpoint")
    if not (ckpt.path / "tokenizer.json").is_file():
        raise UserError(f"{ckpt.path} has no tokenizer.json, so it cannot translate; retrain into a new --out")
    return model.to(device).eval(), load_tokenizer(ckpt.read_text("tokenizer.json")), cfg


def input_format(path: str, lines: list[str]) -> str:
    """``tsv`` when every non-empty line has a tab, ``text`` when none has; a mix or no line is an error."""
    tabbed = [i for i, line in enumerate(lines, 1) if line.strip() and "\t" in line]
    plain = [i for i, line in enumerate(lines, 1) if line.strip() and "\t" not in line]
    if not tabbed and not plain:
        raise UserError(f"--input {path} is empty: nothing to translate")
    if tabbed and plain:
        raise UserError(f"--input {path} mixes formats: line {tabbed[0]} has a tab (TSV) but line {plain[0]} has "
                        "none (text); fix the file, or pass --format tsv or --format text")
    return "tsv" if tabbed else "text"


def read_input(path: str, fmt: str = "auto") -> tuple[list[str], list[str] | None]:
    """Sources and, for a TSV or hub dataset, references."""
    if path.startswith("hf:"):
        pairs = load_parallel(path, local_hint="pass --input PATH to a local TSV (finnish<TAB>english)")
        return [p.src for p in pairs], [p.tgt for p in pairs]
    lines = read_text_lines(Path(path))
    if fmt == "auto":
        fmt = input_format(path, lines)
    if fmt == "tsv":
        pairs = load_parallel(path).require("--input")
        return [p.src for p in pairs], [p.tgt for p in pairs]
    if not any(line.strip() for line in lines):
        raise UserError(f"--input {path} is empty: nothing to translate")
    return lines, None


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
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="run folder (best checkpoint) or checkpoint folder")
    p.add_argument("--input", required=True, help="TSV finnish<TAB>english, or plain Finnish sentences")
    p.add_argument("--format", default="auto", choices=FORMATS, help="how to read --input (auto: from every line)")
    p.add_argument("--output", type=Path, default=None,
                   help="write hypotheses here, one per line (default for plain text: stdout)")
    p.add_argument("--device", default="auto")
    add_strategy_args(p)
    args = p.parse_args(argv)
    strategy = strategy_from_args(args)
    if args.output is not None:  # checked now, not after the whole file has been translated
        if args.output.is_dir():
            raise UserError(f"--output {args.output} is a folder; name a file")
        try:
            args.output.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"--output {args.output}: cannot create its folder ({exc.strerror})") from None
    device = pick_device(args.device)
    model, tok, cfg = load_translator(args.checkpoint, device)
    sources, refs = read_input(args.input, args.format)
    found, truncated = hypotheses(model, tok, cfg, sources, device, strategy)
    if truncated:
        print(f"warning: {truncated} line(s) longer than {cfg.max_len} tokens were truncated", file=sys.stderr)
    hyps = [decode(tok, h[0].tokens) if h else "" for h in found]
    if args.output:
        args.output.write_text("\n".join(hyps) + "\n", encoding="utf-8")
    elif refs is None:
        sys.stdout.write("\n".join(hyps) + "\n")
    if refs is not None:
        scores = translation_scores(hyps, refs)
        for name, score in scores.items():
            print(f"{name.upper():5s} {score.score:6.2f}  {score.signature}")
        print(json.dumps({name: score.score for name, score in scores.items()}))


if __name__ == "__main__":
    main()
