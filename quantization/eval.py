"""Evaluate one trained checkpoint under one precision: accuracy, macro-F1, bytes, memory and latency.

    python quantization/eval.py --checkpoint runs/minilm --method int8_weight_per_channel \\
        --dev ../shared/data/agnews/dev.csv --train ../shared/data/agnews/train.csv

``--train`` supplies the calibration batches W8A8 needs (``--calib-seed`` picks the random subset). It prints a
short table; ``--json`` writes every measurement (and the predictions) to a file; ``bench.py`` runs this once per method
and latency sweep, each in a fresh process, so peak memory belongs to that method alone. ``--device`` (default
``auto``) is where the model is quantized, evaluated and timed; peak memory is CUDA's max allocated there,
the process's peak RSS on the CPU.
"""

from __future__ import annotations

import argparse
import json
import sys

from quantization.measure import CALIB_BATCHES, run_method
from quantization.quantize import METHODS, get_method
from shared_utils.cli import (
    Parser,
    data_source,
    nonnegative_int,
    output_dir,
    output_file,
    positive_int,
    user_path,
    write_output,
)
from shared_utils.errors import UserError, cli_main
from shared_utils.runtime import pick_device


def summary(result: dict) -> str:
    """What a user reads after one evaluation: a short table (every measurement is in ``--json``)."""
    rows = [("method", result["method"]), ("device", result["device"])]
    if "accuracy" in result:
        rows += [("dev rows", f"{result['dev_rows']:,}"), ("accuracy", f"{100 * result['accuracy']:.2f}%"),
                 ("macro-F1", f"{100 * result['macro_f1']:.2f}")]
    rows += [("quantized-layer bytes", f"{result['quantized_layer_bytes_ratio']:.3f}x fp32's"),
             ("model", f"{result['model_bytes'] / 2**20:.1f} MB (fp32: {result['fp32_model_bytes'] / 2**20:.1f} MB)"),
             ("peak memory", f"{result['peak_memory_mb']:.0f} MB ({result['memory_kind']})")]
    for batch in (1, 32):
        if f"latency_ms_b{batch}" in result:
            t = result[f"latency_ms_b{batch}"]
            rows.append((f"latency b{batch} x {result['latency_seq_len']}",
                         f"{t['median_ms']:.1f} ms median [IQR {t['iqr_ms'][0]:.1f}, {t['iqr_ms'][1]:.1f}]"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


@cli_main
def main(argv: list[str] | None = None) -> None:
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, type=user_path,
                   help="run folder (uses its best checkpoint) or checkpoint folder")
    p.add_argument("--method", default=argparse.SUPPRESS, type=get_method, metavar="METHOD",
                   help=f"default: fp32; choices: {', '.join(METHODS)}")
    p.add_argument("--dev", required=True, type=data_source, help="CSV label,text (or hf:fancyzhx/ag_news::test)")
    p.add_argument("--train", default=None, type=data_source, help="CSV for W8A8 calibration")
    p.add_argument("--limit", type=nonnegative_int, default=0, help="evaluate the first N dev rows only (0 = all)")
    p.add_argument("--calib-batches", type=positive_int, default=CALIB_BATCHES,
                   help="W8A8 calibration batches of 32 texts (default: %(default)s)")
    p.add_argument("--calib-seed", type=nonnegative_int, default=0,
                   help="which random calibration subset (default: %(default)s)")
    p.add_argument("--latency-blocks", type=positive_int, default=3,
                   help="timed blocks per batch size (default: %(default)s)")
    timing = p.add_mutually_exclusive_group()
    timing.add_argument("--latency-only", action="store_true", help="skip the dev set (timing sweeps)")
    timing.add_argument("--no-latency", action="store_true", help="skip the latency timing (about 10 s)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: %(default)s)")
    p.add_argument("--save-quantized", type=output_dir, default=None,
                   help="keep the quantized model in this folder (scratch methods)")
    p.add_argument("--load-quantized", type=user_path, default=None,
                   help="evaluate a model saved by --save-quantized (its own method) instead of quantizing")
    p.add_argument("--json", type=output_file, default=None, help="write every measurement (and the predictions) here")
    args = p.parse_args(argv)
    if args.load_quantized is not None and "method" in args:
        raise UserError("--method does nothing with --load-quantized (the saved model's own method is used): "
                        "drop one of them")
    method = getattr(args, "method", METHODS["fp32"])
    if method.slow_on_cpu and pick_device(args.device).type == "cpu":
        print("warning: fp16 on a CPU has no native matrix products here: it runs many times slower than fp32 "
              "(use bf16, or a GPU)", file=sys.stderr)
    result = run_method(args.checkpoint, method, args.dev, args.train, limit=args.limit,
                        calib_batches=args.calib_batches, calib_seed=args.calib_seed,
                        latency_blocks=args.latency_blocks, device=args.device, accuracy_too=not args.latency_only,
                        latency=not args.no_latency, save_dir=args.save_quantized, load_dir=args.load_quantized)
    if args.json:
        write_output(args.json, json.dumps(result))
    print(summary(result))


if __name__ == "__main__":
    main()
