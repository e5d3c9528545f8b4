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

from shared_utils.cli import Parser, input_file, output_file, user_path, write_output
from shared_utils.data import read_text_lines
from shared_utils.errors import UserError, cli_main
from shared_utils.runtime import pick_device
from translation.decoding import add_strategy_args, strategy_from_args
from translation.inference import add_engine_args, open_translator
from translation.tokenizer import decode


def format_output(tok, hyps: list[list], nbest: int) -> list[str]:
    if nbest == 1:
        return [decode(tok, h[0].tokens) if h else "" for h in hyps]
    return [f"{i}\t{h.score:.4f}\t{decode(tok, h.tokens)}" for i, row in enumerate(hyps) for h in row[:nbest]]


def prompt():
    """Lines typed at the prompt, until end of input (Ctrl-D); an empty line is skipped. The prompt goes to
    stderr, so stdout holds the translations alone when it is piped."""
    while True:
        print("fi> ", end="", file=sys.stderr, flush=True)
        try:
            line = input()
        except EOFError:
            print(file=sys.stderr)
            return
        except UnicodeDecodeError as exc:
            raise UserError(f"<stdin>: invalid UTF-8 at byte {exc.start} of the typed line") from None
        if line.strip():
            yield line


@cli_main
def main(argv: list[str] | None = None) -> None:
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, type=user_path,
                   help="run folder (its best checkpoint) or a checkpoint folder")
    p.add_argument("--input", type=input_file, default=None, help="Finnish sentences, one per line (default: stdin)")
    p.add_argument("--output", type=output_file, default=None,
                   help="write translations here, its folders made as needed (default: stdout)")
    p.add_argument("--interactive", action="store_true", help="prompt for one sentence at a time")
    p.add_argument("--batch-tokens", type=int, default=4000, help="source tokens per batch")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    add_engine_args(p)
    add_strategy_args(p)
    args = p.parse_args(argv)
    strategy = strategy_from_args(args)
    if args.batch_tokens <= 0:
        raise UserError(f"--batch-tokens must be positive, got {args.batch_tokens}")
    device = pick_device(args.device)
    translator = open_translator(args.checkpoint, args.engine, device, args.compute_type)

    def run(lines: list[str]) -> list[str]:
        hyps, truncated = translator.hypotheses(lines, strategy, args.batch_tokens)
        if truncated:
            print(f"warning: {truncated} line(s) longer than {translator.cfg.max_len} tokens were truncated",
                  file=sys.stderr)
        return format_output(translator.tok, hyps, strategy.nbest)

    if args.interactive or (args.input is None and sys.stdin.isatty()):
        print(f"Finnish -> English ({strategy.strategy}); Ctrl-D quits.", file=sys.stderr)
        for line in prompt():
            print("\n".join(run([line])), flush=True)
        return
    lines = read_text_lines(args.input, sys.stdin.buffer)
    out = "\n".join(run(lines)) + "\n" if lines else ""
    if args.output:
        write_output(args.output, out)
    else:
        sys.stdout.write(out)


if __name__ == "__main__":
    main()
