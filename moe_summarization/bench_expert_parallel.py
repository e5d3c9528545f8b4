"""The expert-parallel row of the MoE layer benchmark: one layer's forward+backward with its experts sharded
over the ranks of ``torchrun``, the time split into all-to-all and the rest, and the bytes each token sends.

    torchrun --standalone --nproc_per_node=2 -m moe_summarization.bench_expert_parallel --json ep.json

``bench_moe.py`` starts it. Every rank runs the same fixed number of steps (collectives must match, so the
timer is ``torch.utils.benchmark.Timer.timeit(1)`` per step rather than an adaptive block), with a barrier
before each, and rank 0 writes the medians and IQRs. The all-to-all share is measured by timing, alone, the
exchanges one step makes: the tokens there and back in the forward pass, and both again in the backward pass.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.benchmark import Timer

from moe_summarization.config import SPEED_LAYER, with_balancer
from moe_summarization.expert_parallel import AllToAll, ExpertParallelMoE
from moe_summarization.moe import MoELayer, _group, capacity_for
from shared_utils.cli import Parser, positive_int
from shared_utils.errors import cli_main
from shared_utils.runtime import device_info, seed_everything


def fixed_steps(fn, steps: int, warmup: int = 2) -> list[float]:
    """ms of ``fn()`` for each of ``steps`` calls, every rank in lock-step (a barrier before each call)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        dist.barrier()
        times.append(Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads()).timeit(1).median
                     * 1e3)
    return times


def summary(times: list[float]) -> dict:
    q25, q75 = np.percentile(times, [25, 75])
    return {"median_ms": float(np.median(times)), "iqr_ms": [float(q25), float(q75)], "repeats": len(times)}


def measure(tokens: int, d: int, f: int, experts: int, steps: int) -> dict:
    seed_everything(0)
    cfg = with_balancer(replace(SPEED_LAYER, d_model=d, d_ff=f, num_experts=experts), "switch_aux")
    layer = ExpertParallelMoE(MoELayer(cfg).train())
    rank = dist.get_rank()
    x = torch.randn(tokens, d, generator=torch.Generator().manual_seed(rank))
    grad = torch.randn(tokens, d, generator=torch.Generator().manual_seed(100 + rank))

    def step():
        layer.zero_grad(set_to_none=True)
        result = layer(x)
        ((result.out * grad).sum() + result.aux_loss).backward()

    # the exchanges of one step, alone: the same split sizes as the layer's own
    with torch.no_grad():
        routing = layer.router(x)
        assign, _, expert, _, _ = _group(routing, experts, capacity_for(cfg, routing.expert_idx.numel()))
    per_expert = torch.bincount(expert, minlength=experts)
    incoming = torch.empty_like(per_expert)
    dist.all_to_all_single(incoming, per_expert)
    send, recv = per_expert.view(layer.ranks, -1).sum(1).tolist(), incoming.view(layer.ranks, -1).sum(1).tolist()
    payload = torch.randn(len(assign), d, requires_grad=True)

    def exchanges():
        there = AllToAll.apply(payload, send, recv, None)
        back = AllToAll.apply(there, recv, send, None)
        back.sum().backward()  # the backward pass runs both exchanges in reverse

    total, comm = fixed_steps(step, steps), fixed_steps(exchanges, steps)
    kept_per_token = len(assign) / tokens
    return {"world_size": layer.ranks, "tokens_per_rank": tokens, "d_model": d, "d_ff": f, "experts": experts,
            "k": cfg.k, "capacity_factor": cfg.capacity_factor, "ms_fwd_bwd": summary(total),
            "ms_all_to_all": summary(comm),
            "all_to_all_share": float(np.median(comm) / np.median(total)),
            # each kept assignment sends d_model fp32 values to its expert and receives as many back, in the
            # forward pass; the backward pass moves the same volume again
            "bytes_per_token": 2 * kept_per_token * d * x.element_size(),
            "bytes_per_token_fwd_bwd": 4 * kept_per_token * d * x.element_size(),
            "device": device_info(x.device)["label"], "backend": dist.get_backend()}


@cli_main
def main(argv: list[str] | None = None) -> None:
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", type=positive_int, default=4096, help="tokens per rank")
    p.add_argument("--d-model", type=positive_int, default=SPEED_LAYER.d_model)
    p.add_argument("--d-ff", type=positive_int, default=SPEED_LAYER.d_ff)
    p.add_argument("--moe-num-experts", "--experts", dest="experts", type=positive_int,
                   default=SPEED_LAYER.num_experts, help="experts of the layer, as --moe-num-experts is in train.py "
                   "(--experts, its old name, still works)")
    p.add_argument("--steps", type=positive_int, default=7)
    p.add_argument("--json", type=Path, required=True)
    args = p.parse_args(argv)
    dist.init_process_group("gloo")
    try:
        row = measure(args.tokens, args.d_model, args.d_ff, args.experts, args.steps)
        if dist.get_rank() == 0:
            args.json.write_text(json.dumps(row, indent=2), encoding="utf-8")
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
