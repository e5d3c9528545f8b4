"""How memory and latency grow with model size, per precision, up to the seed's model (GPT-2 Large).

    make quant-scale                                         # = python quantization/bench_scale.py --publish
    python quantization/bench_scale.py --sizes gpt2 --methods fp32,w8a8 --sweeps 1   # a quick look

GPT-2 small, medium and large (124M / 355M / 774M parameters) are built from their configs with random
weights (seeded): no accuracy is read from them, so no hub and no training are needed; accuracy stays on the
trained model of ``bench.py``. For every precision that runs on this CPU and every size, one fresh process
(a worker) builds the model, quantizes it and measures: the quantized layers' bytes, the model's bytes, the
process's RSS after quantizing and its peak RSS (Linux's high-water mark: memory that bitsandbytes or
onnxruntime hold outside torch's view is in it), and the latency of the whole model at batch 1 and batch 8 x
128 tokens (``torch.utils.benchmark``). As in ``bench.py``, the sweep over the precisions is repeated in a
shuffled order (``--sweeps``, 2: each of GPT-2 Large's processes takes about 40 s; ``--large-sweeps`` sets
GPT-2 Large's apart) and speed-ups are paired by sweep. The fp32 worker also profiles one call at
each batch size: the share of the forward spent in matrix products, which bounds what int8 matmuls can gain.

Each size's exponent is the slope of log(cost) against log(parameters), fitted over the three sizes.
Writes ``scale.json``, ``scale.md`` and ``scale.png`` to ``runs/quant-scale`` (``--out``), or to ``results/``
with ``--publish``.
"""

from __future__ import annotations

import gc
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from quantization.quantize import (
    METHODS,
    quantize_model,
    quantized_bytes,
    target_layers,
)
from shared_utils.cli import Parser, add_results_flags, positive_int, results_folder
from shared_utils.errors import UserError, cli_main
from shared_utils.report import pyplot, ratio_cell, save_figure
from shared_utils.runtime import device_info, peak_rss_mb, proc_status_mb, seed_everything
from shared_utils.timing import Timing, interleaved, ratio, time_by_op_family

RESULTS = Path(__file__).resolve().parent / "results"
SIZES = {  # GPT-2's published configs (Radford et al. 2019; the hub's gpt2, gpt2-medium, gpt2-large)
    "gpt2": dict(n_embd=768, n_layer=12, n_head=12),
    "gpt2-medium": dict(n_embd=1024, n_layer=24, n_head=16),
    "gpt2-large": dict(n_embd=1280, n_layer=36, n_head=20),
    "gpt2-tiny": dict(n_embd=64, n_layer=2, n_head=2),  # not a published size: the tests' (never a default)
}
DEFAULT_SIZES = ("gpt2", "gpt2-medium", "gpt2-large")
SEQ, BATCHES = 128, (1, 8)
# every precision that runs on a CPU (the calibration variants of bench.py's table, which change accuracy and not
# cost, are left out): torchao compiled pays its compile once per process and shape, outside the timed calls
DEFAULT_METHODS = ("fp32", "bf16", "int8_weight_per_channel", "w8a8", "w8a8_dynamic", "torch_dynamic_int8",
                   "torchao_int8_dynamic", "torchao_int8_dynamic_compiled", "bnb_int8", "bnb_nf4", "bnb_nf4_dq",
                   "bnb_fp4", "bnb_fp4_dq", "onnxruntime_fp32", "onnxruntime_int8")
# one ONNX file holds at most 2 GB, and GPT-2 Large's fp32 weights are 3.1 GB: onnxruntime runs up to medium
ONNX_SIZES = ("gpt2-tiny", "gpt2", "gpt2-medium")
CALIB_BATCHES = 2  # W8A8's calibration: random-token batches (the weights are random too)


def build(size: str):
    """GPT-2 ``size`` with random weights, as the benchmark's classifier (4 labels), in eval mode."""
    from transformers import GPT2Config, GPT2ForSequenceClassification

    seed_everything(0)
    config = GPT2Config(**SIZES[size], num_labels=4, pad_token_id=50256, n_positions=1024)
    return GPT2ForSequenceClassification(config).eval()


def tokens(batch: int, seed: int) -> dict:
    ids = torch.randint(0, 50256, (batch, SEQ), generator=torch.Generator().manual_seed(seed))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def measure(size: str, method: str, *, profile: bool) -> dict:
    """One worker's measurements (see the module's docstring); runs in its own process."""
    model = build(size)
    count, names = parameters(model), list(target_layers(model))
    fp32_layer_bytes, fp32_bytes = quantized_bytes(model, names)
    calibration = [tokens(4, 100 + i) for i in range(CALIB_BATCHES)] if METHODS[method].calibrated else None
    with torch.no_grad():
        model = quantize_model(model, METHODS[method], calibration=calibration)
    layer_bytes, model_bytes = quantized_bytes(model, names)
    gc.collect()
    out = {"size": size, "method": method, "parameters": count, "quantized_layer_bytes": layer_bytes,
           "fp32_layer_bytes": fp32_layer_bytes, "quantized_layer_bytes_ratio": layer_bytes / fp32_layer_bytes,
           "model_bytes": model_bytes, "fp32_model_bytes": fp32_bytes,
           "rss_after_quantize_mb": proc_status_mb("VmRSS")}
    with torch.no_grad():
        for batch in BATCHES:
            inputs = tokens(batch, batch)

            def call(inputs=inputs):
                return model(**inputs)

            out[f"latency_ms_b{batch}"] = interleaved({"m": call}, repeats=1, min_run_time=0.2)["m"].as_dict()
            if profile:
                split = time_by_op_family(call, runs=1)
                out[f"matmul_share_b{batch}"] = split["matmul"]["share"]
    out["peak_memory_mb"], out["memory_kind"] = peak_rss_mb(), "cpu_peak_rss"
    return out


def run_worker(size: str, method: str, profile: bool) -> dict:
    """:func:`measure` in a fresh process (a clean peak-memory reading); an error is one line in the result."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        cmd = [sys.executable, "-m", "quantization.bench_scale", "--worker", size, method, str(out)]
        cmd += ["--profile"] if profile else []
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            return {"size": size, "method": method, "error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
        return json.loads(out.read_text())


def sweep(sizes: list[str], methods: list[str], sweeps: int, large_sweeps: int, seed: int = 0) -> dict:
    """Every (size, method) measured ``sweeps`` times (GPT-2 Large ``large_sweeps``), each sweep over the methods
    in a new shuffled order; the first sweep's record keeps the bytes and memory, later ones add latency rounds."""
    from tqdm import tqdm

    rng, runs = random.Random(seed), {}
    plan = [(size, s) for size in sizes for s in range(large_sweeps if size == "gpt2-large" else sweeps)]
    bar = tqdm(total=sum(len(usable(size, methods)) for size, _ in plan), desc="scale")
    for size, s in plan:
        order = usable(size, methods)
        rng.shuffle(order)
        for method in order:
            began = time.perf_counter()
            result = run_worker(size, method, profile=method == "fp32" and s == 0)
            seconds = time.perf_counter() - began  # the whole process: imports, build, quantize, timing
            key = (size, method)
            if key not in runs:
                runs[key] = {**result, "worker_seconds": []}
            elif "error" not in result and "error" not in runs[key]:
                for b in BATCHES:
                    kept = runs[key][f"latency_ms_b{b}"]
                    kept["samples_ms"] = [*kept["samples_ms"], *result[f"latency_ms_b{b}"]["samples_ms"]]
            runs[key]["worker_seconds"].append(seconds)
            bar.update(1)
    bar.close()
    for r in runs.values():
        for b in BATCHES:
            if "error" not in r:
                r[f"latency_ms_b{b}"] = Timing(tuple(r[f"latency_ms_b{b}"]["samples_ms"])).as_dict()
    return runs


def usable(size: str, methods: list[str]) -> list[str]:
    return [m for m in methods if METHODS[m].kind != "onnxruntime" or size in ONNX_SIZES]


def summarise(runs: dict, sizes: list[str], methods: list[str]) -> dict:
    """Per method: every size's record with speed-ups against fp32 (paired by sweep), and each cost's exponent."""
    table = {}
    for method in methods:
        rows = {}
        for size in sizes:
            r = runs.get((size, method))
            if r is None:
                continue
            fp32 = runs.get((size, "fp32"))
            if "error" not in r and fp32 and "error" not in fp32:
                for b in BATCHES:
                    n = min(len(r[f"latency_ms_b{b}"]["samples_ms"]), len(fp32[f"latency_ms_b{b}"]["samples_ms"]))
                    r[f"speedup_vs_fp32_b{b}"] = ratio(Timing(tuple(fp32[f"latency_ms_b{b}"]["samples_ms"][:n])),
                                                       Timing(tuple(r[f"latency_ms_b{b}"]["samples_ms"][:n])))
            rows[size] = r
        table[method] = {"sizes": rows, "exponents": exponents([r for r in rows.values() if "error" not in r])}
    return table


def exponents(rows: list[dict]) -> dict:
    """The slope of log(cost) on log(parameters) for each cost, over the sizes measured (None below two)."""
    if len(rows) < 2:
        return {}
    x = np.log([r["parameters"] for r in rows])
    costs = {"model_bytes": [r["model_bytes"] for r in rows], "peak_memory_mb": [r["peak_memory_mb"] for r in rows],
             **{f"latency_ms_b{b}": [r[f"latency_ms_b{b}"]["median_ms"] for r in rows] for b in BATCHES}}
    return {k: float(np.polyfit(x, np.log(v), 1)[0]) for k, v in costs.items()}


def write_report(result: dict, out: Path) -> None:
    methods, sizes = result["methods"], result["sizes"]
    lines = [f"# How memory and latency grow to GPT-2 Large ({result['device']['label']})", "",
             f"Reproduce: `{result['command']}`. Random weights (no accuracy is read here: accuracy stays on the "
             "trained model of `bench.json`). One fresh process per size and precision, "
             f"{result['sweeps']} sweeps in shuffled order ({result['large_sweeps']} at GPT-2 Large); latency of "
             f"the whole model at {SEQ} tokens, median [IQR] ms; speed-ups paired by sweep, median (95% CI). "
             "Peak MB: the process's peak RSS (it builds the fp32 model first, so the conversion is in it); "
             "RSS MB: the process's resident memory once the model is quantized.", "",
             "| method | size | parameters | layer bytes ratio | model MB | RSS MB | peak MB | b1 ms | b8 ms | "
             "b1 speedup vs fp32 | b8 speedup vs fp32 |", "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | "
             "---: | ---: | ---: |"]
    for method in methods:
        for size in sizes:
            r = result["table"][method]["sizes"].get(size)
            if r is None:
                continue
            if "error" in r:
                lines.append(f"| {method} | {size} | not run: {r['error']} | | | | | | | | |")
                continue
            t = {b: r[f"latency_ms_b{b}"] for b in BATCHES}
            speed = {b: ratio_cell(r[f"speedup_vs_fp32_b{b}"]) if f"speedup_vs_fp32_b{b}" in r else "–"
                     for b in BATCHES}
            lines.append(f"| {method} | {size} | {r['parameters'] / 1e6:.0f}M | "
                         f"{r['quantized_layer_bytes_ratio']:.3f} | {r['model_bytes'] / 2**20:.0f} | "
                         f"{r['rss_after_quantize_mb']:.0f} | {r['peak_memory_mb']:.0f} | "
                         + " | ".join(f"{t[b]['median_ms']:.0f} [{t[b]['iqr_ms'][0]:.0f}, {t[b]['iqr_ms'][1]:.0f}]"
                                      for b in BATCHES) + f" | {speed[1]} | {speed[8]} |")
    lines += ["", "Exponents: the slope of log(cost) on log(parameters) over the sizes (1.0: proportional).", "",
              "| method | model bytes | peak RSS | b1 latency | b8 latency |", "| --- | ---: | ---: | ---: | ---: |"]
    for method in methods:
        e = result["table"][method]["exponents"]
        if e:
            lines.append(f"| {method} | {e['model_bytes']:.2f} | {e['peak_memory_mb']:.2f} | "
                         f"{e['latency_ms_b1']:.2f} | {e['latency_ms_b8']:.2f} |")
    seconds = {s: [x for m in methods for x in result["table"][m]["sizes"].get(s, {}).get("worker_seconds", [])]
               for s in sizes}
    lines += ["", f"Time: {result['wall_minutes']:.1f} minutes in all; median seconds per worker process (imports, "
              "build, quantization, timing): " + ", ".join(f"{s} {np.median(v):.0f}" for s, v in seconds.items() if v)
              + "."]
    shares = {s: result["table"]["fp32"]["sizes"][s] for s in sizes if s in result["table"].get("fp32", {})
              .get("sizes", {}) and "matmul_share_b1" in result["table"]["fp32"]["sizes"][s]}
    if shares:
        lines += ["", "fp32's share of the forward in matrix products (`torch.profiler`, one call):", "",
                  "| size | b1 | b8 |", "| --- | ---: | ---: |",
                  *[f"| {s} | {100 * r['matmul_share_b1']:.0f}% | {100 * r['matmul_share_b8']:.0f}% |"
                    for s, r in shares.items()]]
    (out / "scale.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    plot(result, out)


def plot(result: dict, out: Path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for method in result["methods"]:
        rows = [r for r in result["table"][method]["sizes"].values() if "error" not in r]
        if not rows:
            continue
        x = [r["parameters"] for r in rows]
        axes[0].plot(x, [r["model_bytes"] / 2**20 for r in rows], marker="o", label=method)
        axes[1].plot(x, [r["latency_ms_b1"]["median_ms"] for r in rows], marker="o", label=method)
        axes[2].plot(x, [r["latency_ms_b8"]["median_ms"] for r in rows], marker="o", label=method)
    for ax, title in zip(axes, ("model MB", f"latency, batch 1 x {SEQ} (ms)", f"latency, batch 8 x {SEQ} (ms)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("parameters")
        ax.set_title(title)
    axes[0].legend(fontsize=7)
    fig.suptitle("GPT-2 small -> large, random weights (accuracy: see bench.json)", fontsize=10)
    save_figure(fig, out / "scale.png")


@cli_main
def main(argv: list[str] | None = None) -> None:
    if argv is None and len(sys.argv) > 2 and sys.argv[1] == "--worker":  # one measurement, in its own process
        size, method, path = sys.argv[2:5]
        Path(path).write_text(json.dumps(measure(size, method, profile="--profile" in sys.argv)), encoding="utf-8")
        return
    p = Parser(description=__doc__)
    p.add_argument("--sizes", default=",".join(DEFAULT_SIZES), help=f"comma-separated, of: {', '.join(SIZES)}")
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS), help="comma-separated precisions (see bench.py)")
    p.add_argument("--sweeps", type=positive_int, default=2, help="latency sweeps over the methods per size")
    p.add_argument("--large-sweeps", type=positive_int, default=2, help="the same for GPT-2 Large")
    add_results_flags(p, RESULTS, "quant-scale")
    args = p.parse_args(argv)
    out = results_folder(args, RESULTS, "quant-scale")
    sizes, methods = args.sizes.split(","), args.methods.split(",")
    unknown = [s for s in sizes if s not in SIZES] + [m for m in methods if m not in METHODS]
    if unknown:
        raise UserError(f"unknown size or method: {', '.join(unknown)} (sizes: {', '.join(SIZES)}; methods: see "
                        "quantization/README.md)")
    if "fp32" not in methods:
        raise UserError("--methods needs fp32: every speed-up is against it")
    start = time.perf_counter()
    runs = sweep(sizes, methods, args.sweeps, args.large_sweeps)
    given = sys.argv[1:] if argv is None else argv
    result = {"command": " ".join(["python quantization/bench_scale.py", *given]),
              "device": device_info("cpu"), "sizes": sizes, "methods": methods, "seq_len": SEQ,
              "sweeps": args.sweeps, "large_sweeps": args.large_sweeps,
              "wall_minutes": (time.perf_counter() - start) / 60, "table": summarise(runs, sizes, methods)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "scale.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    write_report(result, out)
    print((out / "scale.md").read_text())


if __name__ == "__main__":
    main()
