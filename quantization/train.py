"""Fine-tune a classifier on AG News (4 classes): the full-precision baseline every quantized model is
compared with.

    python quantization/train.py --preset gpt2-large --out runs/gpt2-large          # GPU + hub (users' default)
    python quantization/train.py --preset minilm --out runs/minilm                  # offline, pretrained MiniLM
    python quantization/train.py --preset tiny --out runs/tiny                      # offline, GPT-2 from scratch
    python quantization/train.py --preset gpt2-large --model /path/to/gpt2-large --train my.csv --dev my_dev.csv

Resumes from ``--out`` when it holds a checkpoint (model, optimizer, schedule, RNG and data position). The best
checkpoint is chosen on a selection split carved from ``--train``; ``--dev`` is logged, never selected on. The
loop itself is ``training.py``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from quantization.config import PRESETS, TrainConfig, make_config
from quantization.training import train
from shared_utils.cli import NO_DEV_NOTE, Parser, add_dataclass_flags, no_hub_dev_for_local_train, output_dir, pick
from shared_utils.errors import cli_main
from shared_utils.runtime import pick_device


def parse_args(argv: list[str] | None) -> tuple[TrainConfig, Path, str]:
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="gpt2-large", choices=tuple(PRESETS),
                   help="the model and its recipe (batch, lr, epochs; minilm and tiny also the local data); flags "
                        "override them (default: %(default)s)")
    p.add_argument("--out", type=output_dir, required=True,
                   help="run folder: checkpoints, metrics.jsonl (made when training starts)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: %(default)s)")
    add_dataclass_flags(p, TrainConfig)
    args = vars(p.parse_args(argv))
    if no_hub_dev_for_local_train(args, ""):
        print(NO_DEV_NOTE)
    preset, out, device = args.pop("preset"), args.pop("out"), args.pop("device")
    return make_config(preset, **pick(args, TrainConfig)), out, device


@cli_main
def main(argv: list[str] | None = None) -> None:
    cfg, out, device = parse_args(argv)
    best = train(cfg, out, pick_device(device))
    print(json.dumps({"best": best, "run": str(out)}))


if __name__ == "__main__":
    main()
