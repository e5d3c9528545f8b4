"""The first run: fine-tune a tiny GPT-2 classifier (trained from scratch) on the repository's synthetic
news-headline sample, then quantize it with every method and print one table. Offline, ~1 minute on 2 cores.

    python quantization/demo.py                 # what `make demo-quant` runs
    python quantization/demo.py --epochs 1      # smaller still (the test)

The numbers are a smoke test of the pipeline on a toy task, not a result.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from quantization.config import make_config
from quantization.measure import run_method
from quantization.quantize import METHODS
from quantization.training import train
from shared_utils.cli import Parser
from shared_utils.errors import cli_main
from shared_utils.runtime import pick_device

SAMPLES = Path(__file__).resolve().parent / "samples"
SHOWN = ("fp32", "int8_weight_per_tensor", "int8_weight_per_channel", "w8a8", "bnb_int8", "bnb_nf4", "bnb_fp4")


def run(out: Path, epochs: float, methods=SHOWN, device: str = "cpu") -> list[dict]:
    train_file, dev_file = str(SAMPLES / "train.csv"), str(SAMPLES / "dev.csv")
    cfg = make_config("tiny", train=train_file, dev=dev_file, tiny_vocab=400, tiny_layers=2, tiny_d_model=64,
                      tiny_heads=2, max_len=32, batch_size=16, epochs=epochs, lr=2e-3, eval_every=1000, select_size=0)
    train(cfg, out, pick_device(device))
    return [run_method(str(out), METHODS[m], dev_file, train_file, calib_batches=2, latency_blocks=1,
                       device=device) for m in methods]


@cli_main
def main(argv: list[str] | None = None) -> None:
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=float, default=4.0)
    p.add_argument("--out", type=Path, default=Path("runs/demo/quantization"))
    p.add_argument("--device", default="cpu", help="cpu (the first run), auto, cuda or cuda:N")
    args = p.parse_args(argv)
    rows = run(args.out, args.epochs, device=args.device)
    print(f"\nquantization demo (smoke test: tiny GPT-2 from scratch, {args.epochs:g} epochs on the synthetic "
          "headline sample; dev = 100 headlines)")
    print(f"{'method':<26}{'accuracy':>9}{'layer bytes':>13}")
    for r in rows:
        print(f"{r['method']:<26}{100 * r['accuracy']:>8.1f}%{r['quantized_layer_bytes_ratio']:>12.3f}x")
    # no latency column: a toy model's milliseconds measure the machine's load, not the method
    print("(latency is not shown for a toy model: `make quant-bench` times each method under the benchmark's "
          "protocol)")


if __name__ == "__main__":
    main()
