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

from shared_utils.cli import Parser, data_source, output_file, user_path, write_output
from shared_utils.data import read_text_lines
from shared_utils.errors import UserError, cli_main
from shared_utils.runtime import pick_device
from translation.data import load_parallel
from translation.decoding import add_strategy_args, strategy_from_args
from translation.inference import add_engine_args, open_translator
from translation.metrics import translation_scores
from translation.tokenizer import decode

FORMATS = ("auto", "tsv", "text")


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


@cli_main
def main(argv: list[str] | None = None) -> None:
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, type=user_path,
                   help="run folder (best checkpoint) or checkpoint folder")
    p.add_argument("--input", required=True, type=data_source,
                   help="TSV finnish<TAB>english, plain Finnish sentences, or hf:...")
    p.add_argument("--format", default="auto", choices=FORMATS, help="how to read --input (auto: from every line)")
    p.add_argument("--output", type=output_file, default=None,
                   help="write hypotheses here, one per line, its folders made as needed (default for plain text: "
                        "stdout)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    add_engine_args(p)
    add_strategy_args(p)
    args = p.parse_args(argv)
    strategy = strategy_from_args(args)
    device = pick_device(args.device)
    translator = open_translator(args.checkpoint, args.engine, device, args.compute_type)
    sources, refs = read_input(args.input, args.format)
    found, truncated = translator.hypotheses(sources, strategy)
    if truncated:
        print(f"warning: {truncated} line(s) longer than {translator.cfg.max_len} tokens were truncated",
              file=sys.stderr)
    hyps = [decode(translator.tok, h[0].tokens) if h else "" for h in found]
    if args.output:
        write_output(args.output, "\n".join(hyps) + "\n")
    elif refs is None:
        sys.stdout.write("\n".join(hyps) + "\n")
    if refs is not None:
        scores = translation_scores(hyps, refs)
        for name, score in scores.items():
            print(f"{name.upper():5s} {score.score:6.2f}  {score.signature}")
        print(json.dumps({name: score.score for name, score in scores.items()}))


if __name__ == "__main__":
    main()
