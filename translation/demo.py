"""The first run: train a tiny translator on the repository's synthetic sample (Finnish number sentences),
then decode the sample dev set with every strategy and print one table. Offline, ~1 minute on 2 CPU cores.

    python translation/demo.py                # what `make demo-translation` runs
    python translation/demo.py --steps 20     # smaller still (the test)

The numbers are a smoke test of the pipeline on a toy task, not a result.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from shared_utils.cli import Parser
from shared_utils.errors import cli_main
from shared_utils.runtime import pick_device
from translation.config import POSITIONALS, TrainConfig, model_config
from translation.data import load_parallel
from translation.decoding import Strategy
from translation.inference import load_translator, translate
from translation.metrics import translation_scores
from translation.training import train

SAMPLES = Path(__file__).resolve().parent / "samples"
STRATEGIES = {"greedy": Strategy("greedy"), "beam 4": Strategy("beam", beam_size=4),
              "top-k 10, T 0.7": Strategy("sample", top_k=10, temperature=0.7),
              "top-p 0.9": Strategy("sample", top_p=0.9)}


def run(out: Path, steps: int, positional: str = "rope", device: str = "cpu") -> list[tuple[str, float, float, float]]:
    """(strategy, BLEU, chrF++, ms per sentence) for a tiny model trained ``steps`` steps."""
    train_file, dev_file = str(SAMPLES / "train.fi-en.tsv"), str(SAMPLES / "dev.fi-en.tsv")
    mcfg = model_config("tiny", positional=positional, vocab_size=300, max_len=32, dropout=0.0)
    cfg = TrainConfig(train=train_file, dev=[dev_file], steps=steps, batch_tokens=800, lr=3e-3, warmup=20,
                      eval_every=steps, dev_limit=0, select_size=0)
    train(mcfg, cfg, out, device)
    target = pick_device(device)
    model, tok, cfg_model = load_translator(out, target)
    dev = load_parallel(dev_file).records
    rows = []
    for name, strategy in STRATEGIES.items():
        start = time.perf_counter()
        hyps = translate(model, tok, cfg_model, [p.src for p in dev], target, strategy)
        ms = 1e3 * (time.perf_counter() - start) / len(dev)
        scores = translation_scores(hyps, [p.tgt for p in dev])
        rows.append((name, scores["bleu"].score, scores["chrf"].score, ms))
    return rows


@cli_main
def main(argv: list[str] | None = None) -> None:
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--positional", default="rope", choices=POSITIONALS)
    p.add_argument("--out", type=Path, default=Path("runs/demo/translation"))
    p.add_argument("--device", default="cpu", help="cpu (the first run), auto, cuda or cuda:N")
    args = p.parse_args(argv)
    rows = run(args.out, args.steps, args.positional, args.device)
    print(f"\ntranslation demo (smoke test: tiny {args.positional} model, {args.steps} steps on the synthetic "
          "sample; dev = 90 unseen sentences)")
    print(f"{'strategy':<18}{'BLEU':>8}{'chrF++':>8}{'ms/sent':>9}")
    for name, bleu, chrf, ms in rows:
        print(f"{name:<18}{bleu:>8.1f}{chrf:>8.1f}{ms:>9.2f}")


if __name__ == "__main__":
    main()
