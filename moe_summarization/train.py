"""Train the summarizer (ours, dense or MoE, or an architecture peer) with teacher forcing.

    python moe_summarization/train.py --out runs/sum-moe --variant moe_top2            # hub XSum (users' default)
    python moe_summarization/train.py --out runs/sum-moe --variant moe_top2 \\
        --train ../shared/data/xsum-style/train.jsonl --dev ../shared/data/xsum-style/dev.jsonl
    python moe_summarization/train.py --out runs/sum-t5 --arch t5 ...   # the T5 peer (dense, no copy head)
    torchrun --nproc_per_node=2 moe_summarization/train.py --out runs/sum-ddp ...   # DDP (gloo on CPU)

The loop itself is ``training.py``; every model and training field is a flag (``--help``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from moe_summarization.config import (
    BALANCERS,
    SIZES,
    VARIANTS,
    MoEConfig,
    SummarizerConfig,
    SumTrainConfig,
    summarizer_config,
)
from moe_summarization.training import train
from shared_utils.cli import NO_DEV_NOTE, Parser, add_dataclass_flags, no_hub_dev_for_local_train, output_dir, pick
from shared_utils.errors import cli_main
from shared_utils.runtime import print_on_rank0


def parse_args(argv: list[str] | None) -> tuple[SummarizerConfig, SumTrainConfig, Path, str]:
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=output_dir, required=True,
                   help="run folder: checkpoints, metrics.jsonl, config.json (made when training starts)")
    p.add_argument("--preset", "--size", dest="size", default="small", choices=tuple(SIZES),
                   help="model sizes (d_model, layers, vocabulary), as --preset is in the other projects (--size, "
                        "its old name, still works); flags override them (default: %(default)s)")
    p.add_argument("--variant", default=None, choices=tuple(VARIANTS),
                   help="fills the --moe-* router, k and balancer fields (dense: no MoE layer; default: moe_top2, "
                        "and dense for an --arch peer)")
    p.add_argument("--balancer", choices=tuple(BALANCERS), default=None,
                   help="a named setting of --moe-aux-loss-weight, --moe-z-loss-weight, --moe-bias-update-rate "
                        "(default: the variant's)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: %(default)s)")
    add_dataclass_flags(p, SummarizerConfig, SumTrainConfig, skip=("moe", "variant"))
    add_dataclass_flags(p, MoEConfig, prefix="moe", skip=("d_model", "hash_vocab_size"))  # the model's own
    args = vars(p.parse_args(argv))
    if no_hub_dev_for_local_train(args, ""):
        print(NO_DEV_NOTE)
    out, size, variant, device = args.pop("out"), args.pop("size"), args.pop("variant"), args.pop("device")
    variant = variant or ("dense" if args.get("arch", "ours") != "ours" else "moe_top2")
    mcfg = summarizer_config(size, variant, balancer=args.pop("balancer"), moe=pick(args, MoEConfig, "moe"),
                             **pick(args, SummarizerConfig))
    return mcfg, SumTrainConfig(**pick(args, SumTrainConfig)), out, device


@cli_main
def main(argv: list[str] | None = None) -> None:
    print_on_rank0(train(*parse_args(argv)))


if __name__ == "__main__":
    main()
