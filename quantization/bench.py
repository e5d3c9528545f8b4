"""The precision benchmark: every method on one trained checkpoint, each in a fresh process, on one device.

    python quantization/bench.py --checkpoint runs/minilm --dev ../shared/data/agnews/dev.csv \\
        --train ../shared/data/agnews/train.csv --device auto --out quantization/results

How it measures (the evidence protocol; see "How we measure" in the README):
- **Accuracy** on the dev set (reported; the checkpoint was chosen on a selection split of the training
  data), with the paired bootstrap 95% CI of each method's accuracy minus fp32's over the dev rows, McNemar's
  exact p-value and a win/tie/loss verdict. W8A8 is calibrated on ``--calib-seeds`` random subsets of the
  training data (3 by default): its accuracy is their mean, with the std.
- **Latency** of the whole model at batch 1 and 32 x 128 tokens through ``torch.utils.benchmark``: every
  method in a fresh process, the sweep over methods repeated ``--sweeps`` times in a shuffled order, a few
  timed blocks each; median and interquartile range over all of them. Speed-ups are paired by sweep.
- **Memory**: the bytes a ``state_dict`` holds, and the peak of each method's own process: CUDA's max
  allocated on a GPU, peak RSS on the CPU (``peak_memory_mb``, with ``memory_kind`` saying which).
- **One block's linear layers alone**, fp32 vs W8A8 (activation quantization and output dequantization
  included) vs the other kernels, interleaved in one process.
- **Where the whole model's time goes** at batch 32, fp32 against W8A8 in one process: each forward, and its
  linear layers alone on the inputs they receive in it; the rest, which W8A8 leaves in fp32, bounds what
  quantizing the linear layers can give (``model_profile_b32``).

``--device`` reaches every subprocess and every tensor; the results name the device (GPU, CUDA and torch
versions, or the CPU and its threads). Writes ``bench.json`` (``--name`` changes the stem), a markdown table
and two plots with error bars.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from quantization import int8_kernels
from quantization.config import LABELS
from quantization.measure import CALIB_BATCHES, calibration_batches, fixed_length_batch
from quantization.model import classifier_from_checkpoint
from quantization.qlinear import Int8WeightOnlyLinear, W8A8Linear, integer_product, linear_weight
from quantization.quantize import get_method, quantize_model, target_layers
from shared_utils.checkpoint import check_project, load_best
from shared_utils.cli import Parser, add_results_flags, nonnegative_int, positive_int, results_folder
from shared_utils.data import load_labelled
from shared_utils.errors import UserError, cli_main
from shared_utils.report import op_family_lines, pyplot, save_figure
from shared_utils.runtime import device_info, pick_device
from shared_utils.stats import bootstrap_items, comparison, mcnemar_p
from shared_utils.timing import Timing, interleaved, ratio, spread, time_by_op_family

RESULTS = Path(__file__).resolve().parent / "results"
# fp16 is left out on CPUs: without native fp16 matmuls it ran ~30x slower than fp32 here (pass it explicitly);
# torch's quantize_dynamic (fbgemm) exists only on the CPU
CPU_ONLY = ("torch_dynamic_int8", "onnxruntime_fp32", "onnxruntime_int8")
# left out on CPUs without AVX-512 VNNI, where torch._int_mm is a scalar loop: torchao's int8 config multiplies
# through it (on an AVX2 EPYC its dev-set pass had not finished after 13 minutes; fp32's whole run took under 2)
NEEDS_FAST_INT_MM = ("torchao_int8_dynamic", "torchao_int8_dynamic_compiled")
ALL_METHODS = ["fp32", "bf16", "fp16", "int8_weight_per_tensor", "int8_weight_per_tensor_asym",
               "int8_weight_per_channel", "int8_weight_per_channel_asym", "w8a8", "w8a8_percentile",
               "w8a8_dynamic", "torch_dynamic_int8", "torchao_int8_dynamic", "torchao_int8_dynamic_compiled",
               "onnxruntime_fp32", "onnxruntime_int8",
               "bnb_int8", "bnb_int8_t0", "bnb_nf4", "bnb_nf4_dq", "bnb_fp4", "bnb_fp4_dq"]


def default_methods(device: torch.device) -> list[str]:
    if device.type == "cuda":
        return [m for m in ALL_METHODS if m not in CPU_ONLY]
    slow_int_mm = not int8_kernels.torch_int_mm_is_fast()
    return [m for m in ALL_METHODS if m != "fp16" and not (slow_int_mm and m in NEEDS_FAST_INT_MM)]


def run_in_subprocess(args: argparse.Namespace, method: str, device: str, *, calib_seed: int = 0,
                      latency_only: bool = False) -> dict:
    """``eval.py`` for one method in its own process (a clean peak-memory reading); returns its JSON."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "quantization.eval", "--checkpoint", str(args.checkpoint), "--method", method,
               "--dev", args.dev, "--limit", str(args.limit), "--latency-blocks", str(args.latency_blocks),
               "--calib-seed", str(calib_seed), "--device", device, "--json", str(out)]
        cmd += ["--train", args.train] if args.train else []
        cmd += ["--latency-only"] if latency_only else []
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            return {"method": method, "error": last}
        return json.loads(out.read_text())


def linear_speed(checkpoint: str, tokens: int, repeats: int, device: torch.device) -> dict:
    """Time the first block's linear layers (summed) at ``tokens`` rows per precision, interleaved."""
    model, _ = classifier_from_checkpoint(load_best(checkpoint))
    model.to(device)
    layers = target_layers(model)
    names = [n for n in layers if ".0." in n] or list(layers)  # the first Transformer block
    block = [layers[n] for n in names]
    fp32_weights = [linear_weight(m)[0] for m in block]  # (N, K) each
    xs = [torch.randn(tokens, w.shape[1], device=device) for w in fp32_weights]  # (M, K) each
    variants = {
        "fp32": (block, xs),
        "bf16": ([copy.deepcopy(m).to(torch.bfloat16) for m in block], [x.bfloat16() for x in xs]),
        "w8a8": ([W8A8Linear.from_float(m, x.abs().amax()) for m, x in zip(block, xs)], xs),
        "w8a8_dynamic": ([W8A8Linear.from_float(m, None) for m in block], xs),
        "int8_weight_per_channel": ([Int8WeightOnlyLinear.from_float(m) for m in block], xs),
    }
    if device.type == "cpu":  # torch's own dynamic int8 (fbgemm), as quantize_model applies it
        dynamic = [quantize_model(torch.nn.Sequential(copy.deepcopy(m)), "torch_dynamic_int8") for m in block]
        variants["torch_dynamic_int8"] = (dynamic, xs)

    with torch.no_grad():
        timings = interleaved({k: each(lambda m, x: m(x), *v) for k, v in variants.items()}, repeats=repeats)
    out = {"layers": names, "shapes_m_k_n": [[tokens, w.shape[1], w.shape[0]] for w in fp32_weights],
           "timings": {k: t.as_dict() for k, t in timings.items()},
           "speedup_vs_fp32": {k: ratio(timings["fp32"], t) for k, t in timings.items() if k != "fp32"}}
    if int8_kernels.fused(xs[0]):
        out["w8a8_phases"] = w8a8_phases(block, variants["w8a8"][0], xs, repeats)
    return out


def each(fn, *seqs):
    """A timed call: ``fn`` on each item of ``seqs`` in turn, every output dropped before the next call, as a
    model frees a layer's output once the next layer has read it. Keeping them all alive instead (a list of
    outputs) makes every call take fresh memory and page it in: that doubled W8A8's block time here."""
    def call() -> None:
        for args in zip(*seqs):
            fn(*args)
    return call


def w8a8_phases(block: list, layers: list[W8A8Linear], xs: list[torch.Tensor], repeats: int) -> dict:
    """Where W8A8's time on the block goes: each pass of its fused forward (``qlinear.fused_forward``) timed on
    its own over the block's layers, interleaved with the whole forward and fp32. The integer matmul alone
    bounds the speed-up: fp32 over it is what W8A8 would reach if quantizing and dequantizing cost nothing.
    Returns {phase: timing} and ``ceiling_vs_fp32``."""
    quantized = [int8_kernels.quantize_rows(x, m.act_scale) for m, x in zip(layers, xs)]  # (M, K) int8, (M,) each
    accs = [integer_product(m, q) for (q, _), m in zip(quantized, layers)]  # (M, N) int32 each
    # the dequantize pass rewrites its accumulator in place; timed again on those bits, it does the same work
    passes = {
        "fp32": each(lambda m, x: m(x), block, xs),
        "w8a8": each(lambda m, x: m(x), layers, xs),
        "quantize": each(lambda m, x: int8_kernels.quantize_rows(x, m.act_scale), layers, xs),
        "quantize_dynamic": each(lambda x: int8_kernels.quantize_rows(x, None), xs),
        "int8_matmul": each(lambda qs, m: integer_product(m, qs[0]), quantized, layers),
        "dequantize": each(lambda a, qs, m: int8_kernels.dequantize_rows_(a, qs[1], m.weight_scale, m.bias),
                           accs, quantized, layers),
    }
    own_gemm = int8_kernels.own_int8_gemm()
    if own_gemm:  # what the integer product cost before the AVX2 GEMM: torch's scalar loop
        passes["int8_matmul_torch_int_mm"] = each(lambda qs, m: torch._int_mm(qs[0], m.weight_int8_t),
                                                  quantized, layers)
    with torch.no_grad():
        timings = interleaved(passes, repeats=repeats)
    out = {"timings": {k: t.as_dict() for k, t in timings.items()},
           "ceiling_vs_fp32": ratio(timings["fp32"], timings["int8_matmul"])}
    if own_gemm:
        out["instruction_ceiling"] = instruction_ceiling(repeats)
    return out


PROBE_ITERS = 2_000_000  # a few ms per call


def instruction_ceiling(repeats: int) -> dict:
    """How much faster than fp32's GEMM the AVX2 int8 GEMM could be on this core at most, given the instructions
    it is built on: ``int8_kernels.py``'s register-only loops of the instructions each inner loop issues per product,
    timed interleaved. Returns the timings, each loop's ``products_per_ns`` and ``int8_over_fp32`` (their ratio),
    round by round."""
    module = int8_kernels.cpu_kernels()
    probes = {"fp32_fma": lambda: module.probe_fp32_fma(PROBE_ITERS, 1.0, 0.0),
              "int16_madd": lambda: module.probe_int16_madd(PROBE_ITERS, 0)}
    timings = interleaved(probes, repeats=repeats)
    rate = {k: int8_kernels.PROBE_PRODUCTS[k] * PROBE_ITERS / np.asarray(t.samples_ms) / 1e6  # products per ns
            for k, t in timings.items()}
    return {"timings": {k: t.as_dict() for k, t in timings.items()},
            "products_per_ns": {k: spread(r) for k, r in rate.items()},
            "int8_over_fp32": spread(rate["int16_madd"] / rate["fp32_fma"])}


def whole_model_profile(ckpt, args: argparse.Namespace, texts: list[str], device: torch.device) -> dict:
    """:func:`model_profile` of the checkpoint ``ckpt`` in fp32 and in W8A8 (calibrated as the bench's first
    subset) on 32 dev texts at ``min(128, max_len)`` tokens, the shape of the whole-model latency."""
    fp32, tok = classifier_from_checkpoint(ckpt)
    fp32.to(device)
    names = list(target_layers(fp32))
    max_len = ckpt.config["max_len"]
    inputs = fixed_length_batch(tok, texts, 32, min(128, max_len), device)
    calibration = calibration_batches(tok, args.train, batches=CALIB_BATCHES, seed=args.calib_seeds[0], max_len=max_len,
                                      device=device)
    w8a8 = quantize_model(copy.deepcopy(fp32), "w8a8", calibration=calibration)
    return model_profile({"fp32": fp32, "w8a8": w8a8}, names, inputs, args.linear_repeats)


def linear_calls(model: torch.nn.Module, names: list[str], inputs: dict) -> tuple[list, list[torch.Tensor]]:
    """The layers ``names`` of ``model`` in the order one forward of ``inputs`` calls them, each with the input
    it received then (forward hooks; inputs shared by several layers, like Q, K and V's, are kept once)."""
    calls: list[tuple[torch.nn.Module, torch.Tensor]] = []
    hooks = [model.get_submodule(n).register_forward_hook(lambda m, args, out: calls.append((m, args[0])))
             for n in names]
    try:
        with torch.no_grad():
            model(**inputs)
    finally:
        for h in hooks:
            h.remove()
    return [m for m, _ in calls], [x for _, x in calls]


def model_profile(models: dict[str, torch.nn.Module], names: list[str], inputs: dict, repeats: int) -> dict:
    """Where the whole model's time goes, fp32 (``models["fp32"]``) against W8A8 (``models["w8a8"]``), in one
    process: each whole forward and its linear layers ``names`` alone on the inputs they receive in that forward,
    the four interleaved for ``repeats`` rounds. Whole minus linears, round by round, is the rest that W8A8
    leaves in fp32 (embeddings, attention, LayerNorm, GELU, residual adds, the head, Python). By Amdahl's law
    the whole model's speed-up cannot pass fp32 over that rest however fast the linear layers get
    (``ceiling_vs_fp32``). ``torch.profiler``'s operator families split each forward further; W8A8's fused
    quantize and dequantize passes are not torch operators, so their time counts as ``outside operators``."""
    calls = {k: linear_calls(m, names, inputs) for k, m in models.items()}
    candidates = {k: (lambda m=m: m(**inputs)) for k, m in models.items()}
    candidates.update({f"{k}_linears": each(lambda m, x: m(x), *v) for k, v in calls.items()})
    with torch.no_grad():
        timings = interleaved(candidates, repeats=repeats)
        profiled = {k: time_by_op_family(candidates[k], runs=1) for k in models}
    ms = {k: np.asarray(t.samples_ms) for k, t in timings.items()}
    rest = {k: ms[k] - ms[f"{k}_linears"] for k in models}  # per round
    return {"linear_layers": len(calls["fp32"][0]), "rounds": repeats,
            "timings": {k: t.as_dict() for k, t in timings.items()},
            "rest_ms": {k: spread(v) for k, v in rest.items()},
            "linear_share": {k: spread(ms[f"{k}_linears"] / ms[k]) for k in models},
            "speedup_vs_fp32": ratio(timings["fp32"], timings["w8a8"]),
            "linear_speedup_vs_fp32": ratio(timings["fp32_linears"], timings["w8a8_linears"]),
            "ceiling_vs_fp32": spread(ms["fp32"] / rest["w8a8"]),
            "time_by_op_family": profiled}


def accuracy_evidence(method_correct: list[list[bool]], fp32_correct: list[bool]) -> dict:
    """Accuracy of a method (mean over its calibration subsets) against fp32 on the same rows: per-subset
    values, std, the two-level bootstrap CI of the difference (points), the seed-level test over the
    calibration subsets (a quantized copy of the same model: one-sample against fp32's value), McNemar's p and
    the verdict."""
    per_seed = [100 * float(np.mean(c)) for c in method_correct]
    fp32 = [100 * float(np.mean(fp32_correct))]
    entry = comparison("method", per_seed, "fp32", fp32,
                       100 * bootstrap_items(np.asarray(method_correct, float), np.asarray([fp32_correct], float)),
                       seeds=list(range(len(per_seed))), b_fixed=True)
    return {"accuracy_per_seed": per_seed, "accuracy_std": entry["std"]["method"],
            "diff_vs_fp32": entry["mean"]["diff"],
            "ci95_vs_fp32": entry["ci95"], "seed_test_vs_fp32": entry["seed_test"], "seed_p_vs_fp32": entry["seed_p"],
            "mcnemar_p_vs_fp32": mcnemar_p(method_correct[0], fp32_correct), "verdict_vs_fp32": entry["verdict"]}


def fmt_timing(t: dict) -> str:
    return f"{t['median_ms']:.1f} [{t['iqr_ms'][0]:.1f}, {t['iqr_ms'][1]:.1f}]"


def write_markdown(result: dict, path: Path) -> None:
    rows = result["methods"]
    lines = [
        f"# Precision benchmark: {result['model']} ({result['device']['label']})",
        "",
        f"Reproduce: `{result['command']}`",
        "",
        f"Dev set: {result['dev']} ({result['dev_rows']} rows; reported: the checkpoint was chosen on a selection "
        "split of the training data). Accuracy: W8A8 rows are the mean over "
        f"{len(result['calib_seeds'])} random calibration subsets (± their std); Δ is the method minus fp32 with the "
        "paired bootstrap 95% CI over dev rows; p is McNemar's exact test. Latency: whole model, 128 tokens per "
        f"row, `torch.utils.benchmark`, {result['sweeps']} sweeps over the methods in shuffled order, median "
        "[IQR] in ms. Bytes: tensors in the state dict (scales included). Peak MB: "
        f"{'CUDA max allocated' if result['device']['device'].startswith('cuda') else 'peak RSS of the process'}.",
        "",
        "| method | accuracy | Δ vs fp32 [95% CI] | McNemar p | verdict | agree w/ fp32 | layer bytes ratio | "
        "model MB | peak MB | b1 ms | b32 ms | b32 speedup vs fp32 [95% CI] |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in rows.items():
        if "error" in r:
            lines.append(f"| {name} | not run: {r['error']} | | | | | | | | | | |")
            continue
        acc = f"{r['accuracy'] * 100:.2f}" + (f" ± {r['accuracy_std']:.2f}" if len(r["accuracy_per_seed"]) > 1 else "")
        ci = r["ci95_vs_fp32"]
        speed = r.get("speedup_vs_fp32_b32")
        lines.append(
            f"| {name} | {acc} | {r['diff_vs_fp32']:+.2f} [{ci[0]:+.2f}, {ci[1]:+.2f}] | "
            f"{r['mcnemar_p_vs_fp32']:.3f} | "
            f"{r['verdict_vs_fp32']} | {100 * r['agreement_with_fp32']:.2f} | {r['quantized_layer_bytes_ratio']:.3f} | "
            f"{r['model_bytes'] / 2**20:.1f} | {r['peak_memory_mb']:.0f} | {fmt_timing(r['latency_ms_b1'])} | "
            f"{fmt_timing(r['latency_ms_b32'])} | "
            + (f"{speed['median']:.2f}x [{speed['ci95'][0]:.2f}, {speed['ci95'][1]:.2f}] {speed['verdict']} |"
               if speed else "|"))
    ls = result["linear_speed"]
    lines += [
        "",
        f"Linear layers of one block alone ({', '.join(ls['layers'])}; M x K x N = "
        f"{', '.join('x'.join(map(str, s)) for s in ls['shapes_m_k_n'])}), interleaved in one process, "
        f"{ls['timings']['fp32']['repeats']} rounds:",
        "",
        "| precision | ms, median [IQR] | speedup vs fp32, median [95% CI], verdict |",
        "| --- | ---: | ---: |",
        *[f"| {k} | {fmt_timing(t)} | " + ("1.00x |" if k == "fp32" else
                                          f"{ls['speedup_vs_fp32'][k]['median']:.2f}x "
                                          f"[{ls['speedup_vs_fp32'][k]['ci95'][0]:.2f}, "
                                          f"{ls['speedup_vs_fp32'][k]['ci95'][1]:.2f}] "
                                          f"{ls['speedup_vs_fp32'][k]['verdict']} |")
          for k, t in ls["timings"].items()],
        "",
    ]
    if "w8a8_phases" in ls:
        ph = ls["w8a8_phases"]["timings"]
        whole, ceiling = ph["w8a8"]["median_ms"], ls["w8a8_phases"]["ceiling_vs_fp32"]
        rest = phases_rest(ph)
        lines += [
            "Where W8A8's time on the block goes (each pass of the fused forward timed alone over the same layers, "
            f"interleaved, {ph['w8a8']['repeats']} rounds; share of the whole W8A8 forward):",
            "",
            "| pass | ms, median [IQR] | share of w8a8 |",
            "| --- | ---: | ---: |",
            *[f"| {k} | {fmt_timing(ph[k])} | {100 * ph[k]['median_ms'] / whole:.0f}% |"
              for k in ("quantize", "quantize_dynamic", "int8_matmul", "dequantize")],
            *([f"| int8_matmul through torch._int_mm (not used here) | {fmt_timing(ph['int8_matmul_torch_int_mm'])} "
               "| |"] if "int8_matmul_torch_int_mm" in ph else []),
            f"| the rest (Python, reshapes, allocation), round by round | {rest['median']:.1f} "
            f"[{rest['iqr'][0]:.1f}, {rest['iqr'][1]:.1f}] | {100 * rest['median'] / whole:.0f}% |",
            f"| w8a8, whole | {fmt_timing(ph['w8a8'])} | 100% |",
            f"| fp32, whole | {fmt_timing(ph['fp32'])} | |",
            "",
            f"Ceiling (fp32 over the integer matmul alone: W8A8 with free quantize and dequantize passes): "
            f"{ceiling['median']:.2f}x [{ceiling['iqr'][0]:.2f}, {ceiling['iqr'][1]:.2f}]. "
            "quantize_dynamic is the dynamic mode's quantize pass (each row's own scale) in place of the static one.",
            "",
        ]
        if "instruction_ceiling" in ls["w8a8_phases"]:
            lines += instruction_ceiling_lines(ls["w8a8_phases"]["instruction_ceiling"])
    if "model_profile_b32" in result:
        lines += model_profile_lines(result["model_profile_b32"])
    path.write_text("\n".join(lines), encoding="utf-8")


def phases_rest(ph: dict) -> dict:
    """W8A8's block time outside its three passes, per round (whole minus the passes timed in the same round),
    so a drift common to the round cancels; a difference of medians went negative on a noisy machine."""
    per_round = np.asarray(ph["w8a8"]["samples_ms"]) - sum(
        np.asarray(ph[k]["samples_ms"]) for k in ("quantize", "int8_matmul", "dequantize"))
    return spread(per_round)


def instruction_ceiling_lines(ic: dict) -> list[str]:
    rate, top = ic["products_per_ns"], ic["int8_over_fp32"]
    return [
        "The ceiling the instructions set for the AVX2 int8 GEMM against fp32's (register-only loops of what each "
        f"inner loop issues, interleaved, {top['repeats']} rounds): the int16 multiply-add with its int32 add "
        f"{rate['int16_madd']['median']:.1f} products per ns, fp32's FMA {rate['fp32_fma']['median']:.1f}; "
        f"ratio {top['median']:.2f}x [{top['iqr'][0]:.2f}, {top['iqr'][1]:.2f}].",
        "",
    ]


def model_profile_lines(mp: dict) -> list[str]:
    t = mp["timings"]

    def cell(d: dict, unit: str = "x", digits: int = 2) -> str:
        return f"{d['median']:.{digits}f}{unit} [{d['iqr'][0]:.{digits}f}, {d['iqr'][1]:.{digits}f}]"

    def share(d: dict) -> str:
        return f"{100 * d['median']:.0f}% [{100 * d['iqr'][0]:.0f}, {100 * d['iqr'][1]:.0f}]"

    return [
        "Where the whole model's time goes at batch 32 (fp32 and W8A8 in one process: each forward, and its "
        f"{mp['linear_layers']} linear layers alone on the inputs they receive in it, interleaved, "
        f"{mp['rounds']} rounds; the rest is the difference, round by round):",
        "",
        "| part | fp32 ms | w8a8 ms | speedup vs fp32 |",
        "| --- | ---: | ---: | ---: |",
        f"| whole forward | {fmt_timing(t['fp32'])} | {fmt_timing(t['w8a8'])} | {cell(mp['speedup_vs_fp32'])} |",
        f"| linear layers | {fmt_timing(t['fp32_linears'])} | {fmt_timing(t['w8a8_linears'])} | "
        f"{cell(mp['linear_speedup_vs_fp32'])} |",
        "| the rest (embeddings, attention, norms, GELU, head, Python) | "
        f"{cell(mp['rest_ms']['fp32'], '', 1)} | {cell(mp['rest_ms']['w8a8'], '', 1)} | |",
        f"| linear layers' share of the forward | {share(mp['linear_share']['fp32'])} | "
        f"{share(mp['linear_share']['w8a8'])} | |",
        "",
        f"Ceiling (Amdahl: fp32 over W8A8's rest, the whole model's speed-up with free linear layers): "
        f"{cell(mp['ceiling_vs_fp32'])}.",
        *op_family_lines(mp["time_by_op_family"]),
        "",
        "W8A8's fused quantize and dequantize passes are not torch operators: the profiler counts them as "
        "outside operators.",
        "",
    ]


def plot(result: dict, out: Path, stem: str) -> None:
    plt = pyplot()

    ok = {k: v for k, v in result["methods"].items() if "error" not in v}
    fig, ax = plt.subplots(figsize=(8, 5))
    for name, r in ok.items():
        mb, acc = r["model_bytes"] / 2**20, 100 * r["accuracy"]
        low, high = r["ci95_vs_fp32"]  # the CI of the difference, drawn around the method's accuracy
        ax.errorbar(mb, acc, yerr=[[max(0.0, r["diff_vs_fp32"] - low)], [max(0.0, high - r["diff_vs_fp32"])]],
                    fmt="o", capsize=3)
        ax.annotate(name, (mb, acc), fontsize=7, xytext=(4, -3), textcoords="offset points")
    ax.set_xlabel("model size (MB, state dict tensors)")
    ax.set_ylabel("dev accuracy (%); bars: 95% CI of the difference to fp32")
    ax.set_title(f"{result['model']}: accuracy vs memory")
    save_figure(fig, out / f"{stem}_accuracy_vs_memory.png")

    fig, axes = plt.subplots(1, 2, figsize=(11, 5), sharey=True)
    for ax, batch in zip(axes, (1, 32)):
        stats = [ok[n][f"latency_ms_b{batch}"] for n in ok]
        med = [s["median_ms"] for s in stats]
        err = [[m - s["iqr_ms"][0] for m, s in zip(med, stats)], [s["iqr_ms"][1] - m for m, s in zip(med, stats)]]
        ax.barh(list(ok), med, xerr=err, capsize=2, color=["grey" if n == "fp32" else "C0" for n in ok])
        if "fp32" in ok:
            ax.axvline(ok["fp32"][f"latency_ms_b{batch}"]["median_ms"], color="k", lw=0.8, ls="--")
        ax.set_xlabel(f"ms per batch of {batch} x 128 tokens (median, IQR bars)")
    axes[0].invert_yaxis()
    fig.suptitle(f"{result['model']}: whole-model latency\n{result['device']['label']}")  # two lines: the label is long
    save_figure(fig, out / f"{stem}_latency.png")


def model_label(config: dict) -> str:
    return {"tiny": "tiny GPT-2 trained from scratch",
            "minilm": "MiniLM-L6 (all-MiniLM-L6-v2 package) fine-tuned"}.get(config["model"],
                                                                          f"{config['model']} fine-tuned")


@cli_main
def main(argv: list[str] | None = None) -> None:
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="training run folder (its best checkpoint is used)")
    p.add_argument("--dev", required=True)
    p.add_argument("--train", required=True, help="calibration data for W8A8")
    p.add_argument("--methods", default=None, help="comma-separated, fp32 first (default: every method that "
                                                   "runs on the device)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N: every method runs there")
    p.add_argument("--limit", type=nonnegative_int, default=0, help="first N dev rows only (0 = all)")
    p.add_argument("--calib-seeds", type=nonnegative_int, nargs="+", default=[0, 1, 2],
                   help="W8A8 calibration subsets (one accuracy each)")
    p.add_argument("--sweeps", type=positive_int, default=3, help="latency sweeps over the methods")
    p.add_argument("--latency-blocks", type=positive_int, default=3, help="timed blocks per sweep and batch")
    p.add_argument("--linear-repeats", type=positive_int, default=7, help="rounds of the block's linear layers")
    add_results_flags(p, RESULTS, "quant-bench")
    p.add_argument("--name", default="bench", help="file stem of the outputs")
    args = p.parse_args(argv)
    args.out = results_folder(args, RESULTS, "quant-bench")
    device = pick_device(args.device)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else default_methods(device)
    for m in methods:
        get_method(m)
    if methods[0] != "fp32":
        raise UserError("--methods must start with fp32 (the reference for agreement)")
    ckpt = load_best(args.checkpoint)
    check_project(ckpt, "quantization", "pass a quantization run folder (quantization/train.py --out)")
    dev_rows = load_labelled(args.dev, num_labels=len(LABELS)).require("--dev").records
    labels = np.asarray([e.label for e in (dev_rows[: args.limit] if args.limit else dev_rows)])
    where = str(device)

    results: dict[str, dict] = {}
    for method in methods:  # sweep 1: accuracy, bytes, memory and the first latency samples
        calibrated = get_method(method).kind == "w8a8" and get_method(method).observer  # not the dynamic mode
        seeds = args.calib_seeds if calibrated else [0]
        runs = [run_in_subprocess(args, method, where, calib_seed=s) for s in seeds]
        failed = next((r for r in runs if "error" in r), None)
        results[method] = failed or {**runs[0], "calib_runs": [{"calib_seed": r["calib_seed"],
                                                                "predictions": r["predictions"]} for r in runs]}
        print(f"[{method}] " + (failed["error"] if failed else f"accuracy {[r['accuracy'] for r in runs]}"),
              flush=True)
    ok = [m for m in methods if "error" not in results[m]]
    if "fp32" not in ok:
        raise UserError(f"the fp32 reference failed, so nothing can be compared: {results['fp32']['error']}")
    for sweep in range(1, args.sweeps):  # later sweeps: latency only, methods in a new shuffled order
        order = ok[:]
        random.Random(sweep).shuffle(order)
        for method in order:
            r = run_in_subprocess(args, method, where, latency_only=True)
            for batch in (1, 32):
                key = f"latency_ms_b{batch}"
                if key in r:
                    results[method][key] = Timing(tuple(results[method][key]["samples_ms"])
                                                  + tuple(r[key]["samples_ms"])).as_dict()
        print(f"latency sweep {sweep + 1}/{args.sweeps} done", flush=True)

    fp32_correct = [int(p) == int(y) for p, y in zip(results["fp32"]["predictions"], labels)]
    reference = results["fp32"]["predictions"]
    for method in ok:
        r = results[method]
        correct = [[int(p) == int(y) for p, y in zip(run["predictions"], labels)] for run in r.pop("calib_runs")]
        r.update(accuracy_evidence(correct, fp32_correct))
        r["accuracy"] = float(np.mean([np.mean(c) for c in correct]))
        r["agreement_with_fp32"] = float(np.mean([a == b for a, b in zip(r.pop("predictions"), reference)]))
        for batch in (1, 32):
            key = f"latency_ms_b{batch}"
            r[f"speedup_vs_fp32_b{batch}"] = ratio(Timing(tuple(results["fp32"][key]["samples_ms"])),
                                                   Timing(tuple(r[key]["samples_ms"])))
    result = {
        "model": model_label(ckpt.config),
        "checkpoint": str(ckpt.path),
        "device": device_info(device),
        "command": "python quantization/bench.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "dev": args.dev,
        "dev_rows": int(len(labels)),
        "calib_seeds": args.calib_seeds,
        "sweeps": args.sweeps,
        "methods": results,
    }
    result["linear_speed"] = linear_speed(args.checkpoint, 32 * 128, args.linear_repeats, device)
    result["w8a8_linear_speedup_vs_fp32"] = result["linear_speed"]["speedup_vs_fp32"]["w8a8"]
    result["bf16_linear_speedup_vs_fp32"] = result["linear_speed"]["speedup_vs_fp32"]["bf16"]
    if "w8a8" in ok:
        result["w8a8_model_speedup_vs_fp32_b32"] = results["w8a8"]["speedup_vs_fp32_b32"]
        result["model_profile_b32"] = whole_model_profile(ckpt, args, [e.text for e in dev_rows], device)
        torchao = [m for m in NEEDS_FAST_INT_MM if m in ok]
        if torchao:  # W8A8 against torchao at its fastest here: eager or compiled, whichever ran faster
            fastest = min(torchao, key=lambda m: results[m]["latency_ms_b32"]["median_ms"])
            result["w8a8_model_speedup_vs_torchao_b32"] = {**ratio(
                Timing(tuple(results[fastest]["latency_ms_b32"]["samples_ms"])),
                Timing(tuple(results["w8a8"]["latency_ms_b32"]["samples_ms"]))), "torchao_method": fastest}
        if "onnxruntime_int8" in ok:  # the int8 CPU users mostly deploy with
            result["w8a8_model_speedup_vs_onnxruntime_int8_b32"] = ratio(
                Timing(tuple(results["onnxruntime_int8"]["latency_ms_b32"]["samples_ms"])),
                Timing(tuple(results["w8a8"]["latency_ms_b32"]["samples_ms"])))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    write_markdown(result, args.out / f"{args.name}.md")
    plot(result, args.out, args.name)
    print((args.out / f"{args.name}.md").read_text())


if __name__ == "__main__":
    main()
