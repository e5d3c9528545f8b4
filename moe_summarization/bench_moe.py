"""Benchmark of the MoE layer: speed against a dense FFN and Hugging Face's MoE blocks, and expert balance
under each balancing setting in a short real training run. Writes ``results/moe_layer.{json,md}`` and plots.

    python moe_summarization/bench_moe.py            # full run (~15 min on 2 CPU cores)
    python moe_summarization/bench_moe.py --quick    # smoke run (seconds), does not overwrite results/

Speed: forward+backward of one layer on (batch x seq) tokens through ``torch.utils.benchmark``, every variant
timed once per round in a shuffled order (interleaved, so machine noise hits all of them alike), at least 5
rounds; medians and interquartile ranges reported. Ratios are ours / theirs, paired round by round; one is
called faster only when the 95% bootstrap interval of the median ratio lies below 1.0. Hugging Face's
Mixtral experts run under each of transformers' experts implementations (eager per-expert loop, ``grouped_mm``,
``batched_mm``); the headline compares against the fastest, and names it.
Like for like: Hugging Face's Switch and Mixtral experts have no biases (T5 style) and our router has no jitter
noise, so the headline rows run bias-free FFNs (ours, the dense ones) and HF's Switch router without jitter.
The ``_bias`` rows are our layer with the biases the summarizer's experts carry, against a dense FFN with
biases, and against the same HF Switch block (there we do more work than it).
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, replace
from pathlib import Path

import torch
from torch import nn

from moe_summarization.balance import DEFAULT_DATA, ExperimentConfig, late_summary, run
from moe_summarization.config import BALANCERS, DISPATCHES, SPEED_LAYER, MoEConfig, with_balancer
from moe_summarization.moe import FFN, MoELayer, capacity_for
from moe_summarization.reports import plot_layer, write_layer_report
from shared_utils.cli import Parser, add_results_flags, positive_int, results_folder
from shared_utils.errors import UserError, cli_main
from shared_utils.runtime import device_info, pick_device, seed_everything
from shared_utils.timing import interleaved, ratio

RESULTS = Path(__file__).resolve().parent / "results"


def hf_switch(d: int, f: int, experts: int, seq: int, cf: float) -> nn.Module:
    from transformers import SwitchTransformersConfig
    from transformers.models.switch_transformers.modeling_switch_transformers import SwitchTransformersSparseMLP

    config = SwitchTransformersConfig(d_model=d, d_ff=f, num_experts=experts, dense_act_fn="gelu",
                                      expert_capacity=math.ceil(cf * seq / experts), dropout_rate=0.0,
                                      router_jitter_noise=0.0)
    return SwitchTransformersSparseMLP(config)


HF_EXPERTS = ("eager", "grouped_mm", "batched_mm")  # transformers v5's experts implementations


def hf_mixtral(d: int, f: int, experts: int, k: int, implementation: str = "eager") -> nn.Module:
    from transformers import MixtralConfig
    from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock

    config = MixtralConfig(hidden_size=d, intermediate_size=f, num_local_experts=experts, num_experts_per_tok=k,
                           hidden_act="silu")
    config._experts_implementation = implementation  # what from_pretrained(experts_implementation=...) sets
    block = MixtralSparseMoeBlock(config)
    for p in block.parameters():  # MixtralExperts leaves its 3-D weights uninitialised (torch.empty)
        nn.init.normal_(p, std=0.02)
    return block


def step_fn(module: nn.Module, x: torch.Tensor, grad: torch.Tensor):
    """One forward+backward; our layer's aux loss (and statistics) are part of its cost."""

    def step():
        module.zero_grad(set_to_none=True)
        out = module(x)
        if isinstance(out, tuple) and hasattr(out, "aux_loss"):
            loss = (out.out * grad).sum() + out.aux_loss
        else:
            loss = ((out[0] if isinstance(out, tuple) else out) * grad).sum()
        loss.backward()

    return step


def experts_only_fn(layer: MoELayer, x: torch.Tensor, grad: torch.Tensor):
    """The floor under ``layer``: its experts' forward+backward alone, on contiguous segments of the sizes its
    router gives x (capacity applied): no router, no gather or scatter of tokens, no gate. The layer's time over
    this is what dispatch costs; this over the dense FFN is what splitting the work over E weight matrices costs."""
    cfg = layer.cfg
    flat, g = x.reshape(-1, x.shape[-1]), grad.reshape(-1, grad.shape[-1])
    with torch.no_grad():
        routing = layer.router(flat, None)
    load = torch.bincount(routing.expert_idx, minlength=cfg.num_experts)  # (E,)
    capacity = capacity_for(cfg, routing.expert_idx.numel())
    sizes = (load if capacity is None else load.clamp_max(capacity)).tolist()
    kept = sum(sizes)

    def step():
        layer.zero_grad(set_to_none=True)
        segments = zip(flat[:kept].split(sizes), g[:kept].split(sizes))
        loss = sum((layer.experts.one(e, rows) * g_rows).sum() for e, (rows, g_rows) in enumerate(segments)
                   if sizes[e])
        loss.backward()

    return step


def speed(batch: int, seq: int, d: int, f: int, experts: int, repeats: int = 7,
          device: torch.device | str = "cpu") -> dict:
    """Every layer timed interleaved; ratios for both dispatch paths, headline = MoEConfig's default."""
    device = torch.device(device)
    seed_everything(0)
    x = torch.randn(batch, seq, d, device=device)
    grad = torch.randn(batch, seq, d, device=device)
    base = dict(d_model=d, d_ff=f, num_experts=experts)
    variants = {  # name -> (k, capacity factor, activation, balancer, expert biases)
        "top1_cf1.25": (1, 1.25, "gelu", "switch_aux", False),
        "top1_dropless": (1, None, "gelu", "switch_aux", False),
        "top2_cf1.25": (2, 1.25, "gelu", "switch_aux", False),
        "top2_dropless": (2, None, "gelu", "switch_aux", False),
        "swiglu_top2_dropless": (2, None, "swiglu", "none", False),  # Mixtral's block
        "top1_cf1.25_bias": (1, 1.25, "gelu", "switch_aux", True),  # the summarizer's experts
    }
    moe = {}
    for dispatch in DISPATCHES:
        for name, (k, cf, act, bal, bias) in variants.items():
            cfg = MoEConfig(**base, k=k, capacity_factor=cf, activation=act, bias=bias, dispatch=dispatch)
            moe[f"moe_{name}_{dispatch}"] = MoELayer(with_balancer(cfg, bal))
    mixtral_impls, skipped = {}, {}
    for impl in HF_EXPERTS:  # batched_mm gathers a weight copy per token: fine for decoding, not for 4k tokens
        block = hf_mixtral(d, f, experts, 2, impl).to(device)
        try:
            step_fn(block, x, grad)()
            mixtral_impls[impl] = block
        except RuntimeError as exc:  # out of memory: recorded, not timed
            skipped[impl] = str(exc).splitlines()[0][:160]
    modules = {
        "dense_ffn_f": FFN(d, f, bias=False),  # the active parameters of top-1
        "dense_ffn_2f": FFN(d, 2 * f, bias=False),  # the active parameters of top-2
        "dense_ffn_f_bias": FFN(d, f),
        **moe,
        "hf_switch_top1_cf1.25": hf_switch(d, f, experts, seq, 1.25),
        **{f"hf_mixtral_top2_{impl}": block for impl, block in mixtral_impls.items()},
    }
    steps = {n: step_fn(m.to(device), x, grad) for n, m in modules.items()}
    steps["experts_only_top1_cf1.25"] = experts_only_fn(moe[f"moe_top1_cf1.25_{MoEConfig.dispatch}"], x, grad)
    timings = interleaved(steps, repeats=repeats)
    mixtral = min(mixtral_impls, key=lambda impl: timings[f"hf_mixtral_top2_{impl}"].median_ms)  # HF's fastest
    ratios = {}
    for dispatch in DISPATCHES:
        pairs = {
            "time_ratio_vs_dense": (f"moe_top1_cf1.25_{dispatch}", "dense_ffn_f"),
            "time_ratio_vs_experts_only": (f"moe_top1_cf1.25_{dispatch}", "experts_only_top1_cf1.25"),
            "time_ratio_experts_only_vs_dense": ("experts_only_top1_cf1.25", "dense_ffn_f"),
            "time_ratio_top1_dropless_vs_dense": (f"moe_top1_dropless_{dispatch}", "dense_ffn_f"),
            "time_ratio_top2_vs_dense_2f": (f"moe_top2_cf1.25_{dispatch}", "dense_ffn_2f"),
            "time_ratio_top2_dropless_vs_dense_2f": (f"moe_top2_dropless_{dispatch}", "dense_ffn_2f"),
            "time_ratio_vs_hf_switch": (f"moe_top1_cf1.25_{dispatch}", "hf_switch_top1_cf1.25"),
            "time_ratio_vs_hf_mixtral": (f"moe_swiglu_top2_dropless_{dispatch}", f"hf_mixtral_top2_{mixtral}"),
            **{f"time_ratio_vs_hf_mixtral_{impl}": (f"moe_swiglu_top2_dropless_{dispatch}", f"hf_mixtral_top2_{impl}")
               for impl in mixtral_impls},
            "time_ratio_with_bias_vs_dense_with_bias": (f"moe_top1_cf1.25_bias_{dispatch}", "dense_ffn_f_bias"),
            "time_ratio_with_bias_vs_hf_switch": (f"moe_top1_cf1.25_bias_{dispatch}", "hf_switch_top1_cf1.25"),
        }
        ratios[dispatch] = {key: ratio(timings[a], timings[b]) for key, (a, b) in pairs.items()}
        ratios[dispatch]["time_ratio_vs_hf_switch"]["hf_experts"] = "eager (Switch has one implementation)"
        ratios[dispatch]["time_ratio_vs_hf_mixtral"]["hf_experts"] = mixtral
    default = MoEConfig.dispatch
    return {
        "shape": {"batch": batch, "seq": seq, "tokens": batch * seq, "d_model": d, "d_ff": f, "experts": experts},
        "fwd_bwd_ms": {n: t.as_dict() for n, t in timings.items()},
        "hf_mixtral_fastest_experts": mixtral,
        "hf_mixtral_not_timed": skipped,
        "dispatch": default,
        **ratios[default],
        "ratios_by_dispatch": ratios,
    }


def expert_parallel_row(tokens: int, d: int, f: int, experts: int, steps: int, ranks: int = 2) -> dict:
    """One layer with its experts sharded over ``ranks`` processes (``torchrun``, gloo on a CPU): its
    forward+backward time, the all-to-all part of it, and the bytes each token sends."""
    import os
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ep.json"
        torchrun = Path(sys.executable).parent / "torchrun"
        cmd = [str(torchrun), "--standalone", f"--nproc_per_node={ranks}", "-m",
               "moe_summarization.bench_expert_parallel", "--tokens", str(tokens), "--d-model", str(d),
               "--d-ff", str(f), "--experts", str(experts), "--steps", str(steps), "--json", str(out)]
        threads = max(1, torch.get_num_threads() // ranks)  # the ranks share the machine's threads
        proc = subprocess.run(cmd, capture_output=True, text=True,
                              env={**os.environ, "OMP_NUM_THREADS": str(threads)})
        if proc.returncode != 0:
            return {"not_run": (proc.stderr.strip().splitlines() or ["torchrun failed"])[-1]}
        return json.loads(out.read_text())


def balance(cfg: ExperimentConfig, device: torch.device | str = "cpu") -> tuple[dict, dict]:
    summaries, histories = {}, {}
    for name in BALANCERS:
        history = run(cfg, name, device=device)
        histories[name] = history
        summaries[name] = {**late_summary(history), "final_lm_loss": history["loss"][-1],
                           "train_seconds": history["seconds"]}
    return summaries, histories








@cli_main
def main(argv: list[str] | None = None) -> None:
    parser = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes; writes files only where --out says")
    parser.add_argument("--steps", type=positive_int, default=ExperimentConfig.steps,
                        help="training steps per balancing setting")
    parser.add_argument("--data", default=DEFAULT_DATA, help="JSONL with a 'document' key for the balance run")
    add_results_flags(parser, RESULTS, "moe-bench")
    parser.add_argument("--repeats", type=positive_int, default=7, help="timing rounds (at least 5 for a verdict)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (the speed comparison)")
    args = parser.parse_args(argv)
    if args.quick and args.publish:
        raise UserError("--quick is a smoke run at tiny sizes: it never writes the published tables (drop --publish)")
    out = None if args.quick and args.out is None else results_folder(args, RESULTS, "moe-bench")
    device = pick_device(args.device)
    if args.quick:
        sizes = dict(batch=2, seq=64, d=64, f=128, experts=8, repeats=min(args.repeats, 3))
        exp = ExperimentConfig(data=args.data, steps=min(args.steps, 20), documents=300, vocab_size=500,
                               moe=replace(ExperimentConfig().moe, d_model=32, d_ff=64), seq_len=32, batch_size=4)
    else:
        sizes = dict(batch=8, seq=512, d=SPEED_LAYER.d_model, f=SPEED_LAYER.d_ff,
                     experts=SPEED_LAYER.num_experts, repeats=args.repeats)
        exp = ExperimentConfig(data=args.data, steps=args.steps)
    result = {
        "device": device_info(device),
        "command": "python moe_summarization/bench_moe.py" + (" --quick" if args.quick else " --publish"),
        "speed": speed(**sizes, device=device),
        "experiment": asdict(exp),
    }
    shape = result["speed"]["shape"]
    result["expert_parallel"] = expert_parallel_row(shape["tokens"], shape["d_model"], shape["d_ff"],
                                                    shape["experts"], sizes["repeats"])
    result["balance"], histories = balance(exp, device)
    for key in ("time_ratio_vs_dense", "time_ratio_vs_hf_switch", "time_ratio_vs_hf_mixtral"):
        result[key] = result["speed"][key]
    print(json.dumps({k: result[k] for k in ("time_ratio_vs_dense", "time_ratio_vs_hf_switch",
                                             "time_ratio_vs_hf_mixtral", "balance")}, indent=2))
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "moe_layer.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
        write_layer_report(result, out / "moe_layer.md")
        plot_layer(result, histories, out)


if __name__ == "__main__":
    main()
