"""Translate Finnish to English with a trained checkpoint: from a file, from stdin, or at an interactive prompt.

    echo "Hyvää huomenta." | python translation/translate.py --checkpoint runs/mt-rope
    python translation/translate.py --checkpoint runs/mt-rope --input fi.txt --strategy beam --beam-size 4
    python translation/translate.py --checkpoint runs/mt-rope --interactive --strategy sample --top-p 0.9

One output line per input line, in order (empty lines stay empty): lines are split on ``\\n`` only, so a
``\\r`` or ``\\f`` inside a line never shifts the output. With ``--nbest N`` (beam search) each input gets N lines
``index<TAB>score<TAB>translation``. Lines longer than the model's maximum length are truncated, with a
warning on stderr. Input that is not UTF-8 is an error naming the line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from shared_utils.cli import Parser
from shared_utils.data import read_text_lines
from shared_utils.errors import UserError, cli_main
from shared_utils.runtime import pick_device
from translation.decoding import add_strategy_args, strategy_from_args
from translation.inference import hypotheses, load_translator
from translation.tokenizer import decode


def format_output(tok, hyps: list[list], nbest: int) -> list[str]:
    if nbest == 1:
        return [decode(tok, h[0].tokens) if h else "" for h in hyps]
    return [f"{i}\t{h.score:.4f}\t{decode(tok, h.tokens)}" for i, row in enumerate(hyps) for h in row[:nbest]]


def prompt():
    """Lines typed at the prompt, until an empty one or end of input."""
    while True:
        try:
            line = input("fi> ")
        except EOFError:
            return
        except UnicodeDecodeError as exc:
            raise UserError(f"<stdin>: invalid UTF-8 at byte {exc.start} of the typed line") from None
        if not line.strip():
            return
        yield line


@cli_main
def main(argv: list[str] | None = None) -> None:
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="run folder (its best checkpoint) or a checkpoint folder")
    p.add_argument("--input", type=Path, default=None, help="Finnish sentences, one per line (default: stdin)")
    p.add_argument("--output", type=Path, default=None, help="write translations here (default: stdout)")
    p.add_argument("--interactive", action="store_true", help="prompt for one sentence at a time")
    p.add_argument("--batch-tokens", type=int, default=4000, help="source tokens per batch")
    p.add_argument("--device", default="auto")
    add_strategy_args(p)
    args = p.parse_args(argv)
    strategy = strategy_from_args(args)
    if args.batch_tokens <= 0:
        raise UserError(f"--batch-tokens must be positive, got {args.batch_tokens}")
    if args.input is not None and not args.input.is_file():
        raise UserError(f"--input not found: {args.input}")
    device = pick_device(args.device)
    model, tok, cfg = load_translator(args.checkpoint, device)

    def run(lines: list[str]) -> list[str]:
        hyps, truncated = hypotheses(model, tok, cfg, lines, device, strategy, args.batch_tokens)
        if truncated:
            print(f"warning: {truncated} line(s) longer than {cfg.max_len} tokens were truncated", file=sys.stderr)
        return format_output(tok, hyps, strategy.nbest)

    if args.interactive or (args.input is None and sys.stdin.isatty()):
        print(f"Finnish -> English ({strategy.strategy}); an empty line or Ctrl-D quits.", file=sys.stderr)
        for line in prompt():
            print("\n".join(run([line])), flush=True)
        return
    lines = read_text_lines(args.input, sys.stdin.buffer)
    out = "\n".join(run(lines)) + "\n" if lines else ""
    if args.output:
        args.output.write_text(out, encoding="utf-8")
    else:
        sys.stdout.write(out)


if __name__ == "__main__":
    main()
