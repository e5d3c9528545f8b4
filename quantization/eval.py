"""Evaluate one trained checkpoint under one precision: accuracy, macro-F1, bytes, memory and latency.

    python quantization/eval.py --checkpoint runs/minilm --method int8_weight_per_channel \\
        --dev ../shared/data/agnews/dev.csv --train ../shared/data/agnews/train.csv

``--train`` supplies the calibration batches W8A8 needs (``--calib-seed`` picks the random subset).
``--json`` writes every measurement (and the predictions) to a file; ``bench.py`` runs this once per method
and latency sweep, each in a fresh process, so peak memory belongs to that method alone. ``--device`` (default
``auto``) is where the model is quantized, evaluated and timed; peak memory is CUDA's max allocated there,
the process's peak RSS on the CPU.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from quantization.measure import CALIB_BATCHES, run_method
from quantization.quantize import METHODS, get_method
from shared_utils.cli import Parser, nonnegative_int, positive_int
from shared_utils.errors import cli_main


@cli_main
def main(argv: list[str] | None = None) -> None:
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="run folder (uses its best checkpoint) or checkpoint folder")
    p.add_argument("--method", default="fp32", help=f"one of: {', '.join(METHODS)}")
    p.add_argument("--dev", required=True, help="CSV label,text (or hf:fancyzhx/ag_news::test)")
    p.add_argument("--train", default=None, help="CSV for W8A8 calibration")
    p.add_argument("--limit", type=nonnegative_int, default=0, help="evaluate the first N dev rows only (0 = all)")
    p.add_argument("--calib-batches", type=positive_int, default=CALIB_BATCHES,
                   help="W8A8 calibration batches of 32 texts")
    p.add_argument("--calib-seed", type=nonnegative_int, default=0, help="which random calibration subset")
    p.add_argument("--latency-blocks", type=positive_int, default=3, help="timed blocks per batch size")
    p.add_argument("--latency-only", action="store_true", help="skip the dev set (timing sweeps)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--save-quantized", type=Path, default=None,
                   help="keep the quantized model in this folder (scratch methods)")
    p.add_argument("--load-quantized", type=Path, default=None,
                   help="evaluate a model saved by --save-quantized (its method) instead of quantizing")
    p.add_argument("--json", type=Path, default=None, help="write all measurements here")
    args = p.parse_args(argv)
    get_method(args.method)
    result = run_method(args.checkpoint, args.method, args.dev, args.train, limit=args.limit,
                        calib_batches=args.calib_batches, calib_seed=args.calib_seed,
                        latency_blocks=args.latency_blocks, device=args.device, accuracy_too=not args.latency_only,
                        save_dir=args.save_quantized, load_dir=args.load_quantized)
    if args.json:
        args.json.write_text(json.dumps(result), encoding="utf-8")
    shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in result.items() if k != "predictions"}
    print(json.dumps(shown))


if __name__ == "__main__":
    main()
