"""The precision benchmark: every method on one trained checkpoint, each in a fresh process.

    python quantization/bench.py --checkpoint runs/minilm --dev ../shared/data/agnews/dev.csv \\
        --train ../shared/data/agnews/train.csv --out quantization/results

Writes ``bench.json`` (``--name`` changes the stem), a markdown table and two plots (accuracy vs memory,
latency bars). Also times the linear layers of one Transformer block alone — fp32 vs W8A8 (activation
quantization and output dequantization included) vs bf16 vs int8 weight-only — interleaved in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from quantization.model import classifier_from_checkpoint
from quantization.qlinear import Int8WeightOnlyLinear, W8A8Linear, linear_weight
from quantization.quantize import get_method, target_layers
from shared_utils.checkpoint import check_project, load_best
from shared_utils.cli import Parser, nonnegative_int, positive_int
from shared_utils.errors import UserError, cli_main

RESULTS = Path(__file__).resolve().parent / "results"
# fp16 is left out on CPUs: without native fp16 matmuls it ran ~30x slower than fp32 here (pass it explicitly)
DEFAULT_METHODS = ["fp32", "bf16", *(["fp16"] if torch.cuda.is_available() else []),
                   "int8_weight_per_tensor", "int8_weight_per_tensor_asym",
                   "int8_weight_per_channel", "int8_weight_per_channel_asym", "w8a8", "w8a8_percentile",
                   "bnb_int8", "bnb_int8_t0", "bnb_nf4", "bnb_nf4_dq", "bnb_fp4", "bnb_fp4_dq"]


def run_in_subprocess(args: argparse.Namespace, method: str) -> dict:
    """``eval.py`` for one method in its own process (clean peak-memory reading); returns its JSON."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "quantization.eval", "--checkpoint", str(args.checkpoint), "--method", method,
               "--dev", args.dev, "--limit", str(args.limit), "--latency-iters", str(args.latency_iters),
               "--json", str(out)] + (["--train", args.train] if args.train else [])
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            return {"method": method, "error": last}
        return json.loads(out.read_text())


def linear_speed(checkpoint: str, tokens: int, repeats: int) -> dict:
    """Median ms of the first block's linear layers (summed) at ``tokens`` rows, per precision, interleaved."""
    import copy

    model, _ = classifier_from_checkpoint(load_best(checkpoint))
    layers = target_layers(model)
    names = [n for n in layers if ".0." in n] or list(layers)  # the first Transformer block
    block = [layers[n] for n in names]
    fp32_weights = [linear_weight(m)[0] for m in block]  # (N, K) each
    xs = [torch.randn(tokens, w.shape[1]) for w in fp32_weights]  # (M, K) each
    variants = {
        "fp32": (block, xs),
        "bf16": ([copy.deepcopy(m).to(torch.bfloat16) for m in block], [x.bfloat16() for x in xs]),
        "w8a8": ([W8A8Linear.from_float(m, x.abs().amax()) for m, x in zip(block, xs)], xs),
        "int8_weight_per_channel": ([Int8WeightOnlyLinear.from_float(m) for m in block], xs),
    }
    times: dict[str, list[float]] = {k: [] for k in variants}
    with torch.no_grad():
        for _ in range(repeats + 2):  # the first two rounds are warm-up
            for name, (mods, inputs) in variants.items():
                start = time.perf_counter()
                for m, x in zip(mods, inputs):
                    m(x)
                times[name].append((time.perf_counter() - start) * 1e3)
    ms = {k: statistics.median(v[2:]) for k, v in times.items()}
    return {"layers": names, "shapes_m_k_n": [[tokens, w.shape[1], w.shape[0]] for w in fp32_weights], "ms": ms,
            "w8a8_speedup_vs_fp32": ms["fp32"] / ms["w8a8"], "bf16_speedup_vs_fp32": ms["fp32"] / ms["bf16"],
            "int8_weight_only_speedup_vs_fp32": ms["fp32"] / ms["int8_weight_per_channel"]}


def write_markdown(result: dict, path: Path) -> None:
    rows = result["methods"]
    lines = [
        f"# Precision benchmark: {result['model']} ({result['device']})",
        "",
        f"Reproduce: `{result['command']}`",
        "",
        f"Dev set: {result['dev']} ({result['dev_rows']} rows). Latency: whole model, sequence length 128, "
        "median (p50) and p90 of repeated calls after warm-up. Bytes: tensors in the state dict "
        "(bitsandbytes' scales included). Quantized layers: every linear layer of the backbone (the "
        "classification head stays fp32).",
        "",
        "| method | accuracy | macro-F1 | agree w/ fp32 | layer bytes ratio | model MB | peak RSS MB | "
        "b1 p50 ms | b32 p50 ms | b32 p90 ms | ex/s (b32) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in rows.items():
        if "error" in r:
            lines.append(f"| {name} | not run: {r['error']} | | | | | | | | | |")
            continue
        lines.append(
            f"| {name} | {100 * r['accuracy']:.2f} | {100 * r['macro_f1']:.2f} | "
            f"{100 * r['agreement_with_fp32']:.2f} | "
            f"{r['quantized_layer_bytes_ratio']:.3f} | {r['model_bytes'] / 2**20:.1f} | {r['peak_rss_mb']:.0f} | "
            f"{r['latency_ms_b1_p50']:.1f} | {r['latency_ms_b32_p50']:.0f} | {r['latency_ms_b32_p90']:.0f} | "
            f"{r['throughput_examples_per_s_b32']:.1f} |")
    ls = result["linear_speed"]
    lines += [
        "",
        f"Linear layers of one block alone ({', '.join(ls['layers'])}; M x K x N = "
        f"{', '.join('x'.join(map(str, s)) for s in ls['shapes_m_k_n'])}), median ms, interleaved in one run:",
        "",
        "| precision | ms | speedup vs fp32 |",
        "| --- | ---: | ---: |",
        *[f"| {k} | {v:.2f} | {ls['ms']['fp32'] / v:.2f}x |" for k, v in ls["ms"].items()],
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")


def plot(result: dict, out: Path, stem: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = {k: v for k, v in result["methods"].items() if "error" not in v}
    fig, ax = plt.subplots(figsize=(8, 5))
    points: dict[tuple[float, float], list[str]] = {}  # methods that land on the same point share one label
    for name, r in ok.items():
        points.setdefault((round(r["model_bytes"] / 2**20), round(100 * r["accuracy"], 2)), []).append(name)
    for (mb, acc), names in points.items():
        ax.scatter(mb, acc)
        ax.annotate("\n".join(names), (mb, acc), fontsize=7, xytext=(4, -3), textcoords="offset points")
    ax.set_xlabel("model size (MB, state dict tensors)")
    ax.set_ylabel("dev accuracy (%)")
    ax.set_title(f"{result['model']}: accuracy vs memory")
    fig.tight_layout()
    fig.savefig(out / f"{stem}_accuracy_vs_memory.png", dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    for ax, batch in zip(axes, (1, 32)):
        values = [ok[n][f"latency_ms_b{batch}_p50"] for n in ok]
        ax.barh(list(ok), values, color=["grey" if n == "fp32" else "C0" for n in ok])
        ax.axvline(ok["fp32"][f"latency_ms_b{batch}_p50"] if "fp32" in ok else 0, color="k", lw=0.8, ls="--")
        ax.set_xlabel(f"ms per batch of {batch} x 128 tokens (p50)")
    axes[0].invert_yaxis()
    fig.suptitle(f"{result['model']}: whole-model latency on {result['device']}")
    fig.tight_layout()
    fig.savefig(out / f"{stem}_latency.png", dpi=110)
    plt.close(fig)


@cli_main
def main(argv: list[str] | None = None) -> None:
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="training run folder (its best checkpoint is used)")
    p.add_argument("--dev", required=True)
    p.add_argument("--train", required=True, help="calibration data for W8A8")
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS))
    p.add_argument("--limit", type=nonnegative_int, default=0, help="first N dev rows only (0 = all)")
    p.add_argument("--latency-iters", type=positive_int, default=10)
    p.add_argument("--linear-repeats", type=positive_int, default=20)
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--name", default="bench", help="file stem of the outputs")
    args = p.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for m in methods:
        get_method(m)
    if methods[0] != "fp32":
        raise UserError("--methods must start with fp32 (the reference for agreement)")
    ckpt = load_best(args.checkpoint)
    check_project(ckpt, "quantization", "pass a quantization run folder (quantization/train.py --out)")
    model_name = ckpt.config["model"]
    if model_name == "tiny":
        model_name = "tiny GPT-2 trained from scratch"
    elif model_name == "minilm":
        model_name = "MiniLM-L6 (all-MiniLM-L6-v2 package) fine-tuned"
    else:
        model_name = f"{model_name} fine-tuned"
    results = {}
    for method in methods:
        print(f"[{method}] ...", flush=True)
        r = run_in_subprocess(args, method)
        if "predictions" in r:
            preds = r.pop("predictions")
            if method == "fp32":
                reference = preds
            r["agreement_with_fp32"] = sum(a == b for a, b in zip(preds, reference)) / len(reference)
        print(f"[{method}] " + json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}),
              flush=True)
        results[method] = r
    result = {
        "model": model_name,
        "checkpoint": str(ckpt.path),
        "device": f"CPU ({platform.machine()}, {torch.get_num_threads()} threads, {os.cpu_count()} cores)",
        "command": "python quantization/bench.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "dev": args.dev,
        "dev_rows": next((r["dev_rows"] for r in results.values() if "dev_rows" in r), 0),
        "methods": results,
    }
    result["linear_speed"] = linear_speed(args.checkpoint, 32 * 128, args.linear_repeats)
    result["w8a8_linear_speedup_vs_fp32"] = result["linear_speed"]["w8a8_speedup_vs_fp32"]
    result["bf16_linear_speedup_vs_fp32"] = result["linear_speed"]["bf16_speedup_vs_fp32"]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    write_markdown(result, args.out / f"{args.name}.md")
    plot(result, args.out, args.name)
    print((args.out / f"{args.name}.md").read_text())


if __name__ == "__main__":
    main()
