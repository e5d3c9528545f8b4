"""Train the Finnish->English Transformer with teacher forcing.

    python translation/train.py --out runs/mt-rope                        # hub data (users' default)
    python translation/train.py --out runs/mt-rope --positional relative_bias \\
        --train ../shared/data/translation/train.fi-en.tsv \\
        --dev ../shared/data/translation/dev.tatoeba.fi-en.tsv ../shared/data/translation/dev.newstest2018.fi-en.tsv
    torchrun --nproc_per_node=2 translation/train.py --out runs/mt-ddp ...   # DDP (gloo on CPU, nccl on GPU)

The loop itself is ``training.py``; every model and training field is a flag (``--help``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from shared_utils.cli import NO_DEV_NOTE, Parser, add_dataclass_flags, no_hub_dev_for_local_train, output_dir, pick
from shared_utils.errors import UserError, cli_main
from shared_utils.runtime import print_on_rank0
from translation.config import PRESETS, ModelConfig, TrainConfig, model_config
from translation.training import train

# the fields of our model only: the Marian peer keeps its own positions and attention
MARIAN_IGNORES = ("positional", "fused_attention", "relative_buckets", "relative_max_distance")


def parse_args(argv: list[str] | None) -> tuple[ModelConfig, TrainConfig, Path, str]:
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=output_dir, required=True,
                   help="run folder: checkpoints, metrics.jsonl, config.json (made when training starts)")
    p.add_argument("--preset", default="small", choices=tuple(PRESETS),
                   help="model sizes (d_model, layers, heads, FFN); flags override them (default: %(default)s)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: %(default)s)")
    add_dataclass_flags(p, ModelConfig, TrainConfig)  # --dev takes one or more dev sets (TSV or hf:...)
    args = vars(p.parse_args(argv))
    if no_hub_dev_for_local_train(args, []):
        print(NO_DEV_NOTE)
    ignored = [f"--{f.replace('_', '-')}" for f in MARIAN_IGNORES if f in args]
    if args.get("arch") == "marian" and ignored:
        raise UserError(f"{', '.join(ignored)} would do nothing with --arch marian (the Marian peer keeps its own "
                        "sinusoidal positions and attention): drop it, or pass --arch ours")
    out, preset, device = args.pop("out"), args.pop("preset"), args.pop("device")
    return model_config(preset, **pick(args, ModelConfig)), TrainConfig(**pick(args, TrainConfig)), out, device


@cli_main
def main(argv: list[str] | None = None) -> None:
    print_on_rank0(train(*parse_args(argv)))


if __name__ == "__main__":
    main()
