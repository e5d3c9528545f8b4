"""Run the balance experiment (``balance.py``) under one balancing setting and print its late-training load.

    python moe_summarization/experiment.py --balancer none --steps 300
"""

from __future__ import annotations

import argparse
import json

from moe_summarization.balance import DEFAULT_DATA, ExperimentConfig, late_summary, run
from moe_summarization.config import BALANCERS
from shared_utils.cli import Parser
from shared_utils.errors import cli_main
from shared_utils.runtime import pick_device


@cli_main
def main(argv: list[str] | None = None) -> None:
    parser = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--balancer", choices=tuple(BALANCERS), default="own")
    parser.add_argument("--steps", type=int, default=ExperimentConfig.steps)
    parser.add_argument("--data", default=DEFAULT_DATA, help="JSONL with a 'document' key (or hf:...)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    args = parser.parse_args(argv)
    history = run(ExperimentConfig(data=args.data, steps=args.steps), args.balancer, device=pick_device(args.device))
    print(json.dumps({"balancer": args.balancer, "final_loss": history["loss"][-1], **late_summary(history)}))


if __name__ == "__main__":
    main()
