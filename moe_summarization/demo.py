"""The first run: route tokens through every router of the MoE layer, then train tiny dense and MoE
summarizers on the repository's synthetic news sample and print one table each. Offline, ~1 minute.

    python moe_summarization/demo.py              # what `make demo-moe` runs
    python moe_summarization/demo.py --steps 60   # smaller still (the test)

The numbers are a smoke test of the pipeline on a toy task, not a result.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from moe_summarization.config import MoEConfig, SumTrainConfig, summarizer_config
from moe_summarization.data import load_documents
from moe_summarization.inference import lead1, load_summarizer, summarize
from moe_summarization.metrics import rouge_scores
from moe_summarization.moe import MoELayer, capacity_for, moe_reference
from moe_summarization.training import train
from shared_utils.cli import Parser
from shared_utils.errors import cli_main
from shared_utils.runtime import pick_device

SAMPLES = Path(__file__).resolve().parent / "samples"
ROUTERS = {
    "top-1 (Switch), cf 1.25": dict(router="topk", k=1, capacity_factor=1.25),
    "top-2 (GShard), cf 1.25": dict(router="topk", k=2, capacity_factor=1.25),
    "top-2, dropless": dict(router="topk", k=2, capacity_factor=None),
    "hash (Hash Layers)": dict(router="hash", k=1, capacity_factor=1.25, hash_vocab_size=100),
    "expert choice, cf 1.0": dict(router="expert_choice", k=1, capacity_factor=1.0),
}


def route_all(tokens: int = 512) -> list[tuple[str, float, float, float]]:
    """(router, max |fast - loop reference|, max/mean load, dropped fraction) on one random batch."""
    torch.manual_seed(0)
    x, ids = torch.randn(tokens, 32), torch.randint(0, 100, (tokens,))
    rows = []
    for name, kw in ROUTERS.items():
        layer = MoELayer(MoEConfig(d_model=32, d_ff=64, num_experts=8, **kw))
        with torch.no_grad():
            result = layer(x, ids)
            routing = layer.router(x, ids)
            capacity = None if kw["router"] == "expert_choice" else capacity_for(layer.cfg, routing.expert_idx.numel())
            ref = moe_reference(x, routing, layer.experts, 8, capacity)
        rows.append((name, float((result.out - ref).abs().max()), result.stats["max_over_mean"],
                     result.stats["dropped_fraction"]))
    return rows


def summarizers(out: Path, steps: int, device: str = "cpu") -> list[tuple[str, float, float]]:
    """(model, ROUGE-1, ROUGE-L) on the sample dev set for dense / MoE summarizers and lead-1."""
    cfg = SumTrainConfig(train=str(SAMPLES / "train.jsonl"), dev=str(SAMPLES / "dev.jsonl"), steps=steps,
                         batch_tokens=1500, lr=3e-3, warmup=20, eval_every=steps, dev_limit=0,
                         select_size=0)
    dev = load_documents(cfg.dev).records
    refs = [d.summary for d in dev]
    rows = []
    for variant in ("dense", "moe_top2", "moe_top1", "moe_hash"):
        run = out / variant
        train(summarizer_config("tiny", variant, vocab_size=400, dropout=0.0), cfg, run, device)
        model, tok, mcfg = load_summarizer(run, pick_device(device))
        scores = rouge_scores(summarize(model, tok, mcfg, dev, pick_device(device), beam_size=2), refs)
        rows.append((variant, scores["rouge1"], scores["rougeL"]))
    lead = rouge_scores([lead1(d.document) for d in dev], refs)
    return rows + [("lead-1", lead["rouge1"], lead["rougeL"])]


@cli_main
def main(argv: list[str] | None = None) -> None:
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--out", type=Path, default=Path("runs/demo/moe"))
    p.add_argument("--device", default="cpu", help="cpu (the first run), auto, cuda or cuda:N")
    args = p.parse_args(argv)
    routed = route_all()
    models = summarizers(args.out, args.steps, args.device)
    print("\nMoE demo 1/2 (smoke test): one MoE layer, 8 experts, 512 random tokens")
    print(f"{'router':<26}{'|fast - loop|':>14}{'max/mean load':>15}{'dropped':>9}")
    for name, diff, load, dropped in routed:
        print(f"{name:<26}{diff:>14.1e}{load:>15.2f}{100 * dropped:>8.1f}%")
    print(f"\nMoE demo 2/2 (smoke test): tiny summarizers, {args.steps} steps on the synthetic sample "
          "(32 dev documents)")
    print(f"{'model':<12}{'ROUGE-1':>9}{'ROUGE-L':>9}")
    for name, r1, rl in models:
        print(f"{name:<12}{r1:>9.1f}{rl:>9.1f}")


if __name__ == "__main__":
    main()
