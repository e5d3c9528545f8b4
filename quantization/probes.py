"""The quantization bench's micro-benchmarks and profiles: what W8A8 gains on the model's own linear layers
(``linear_speed``, with each phase of a W8A8 call timed), the ceiling the CPU's instructions set for an int8
GEMM (``instruction_ceiling``), and where the whole model spends its forward pass (``model_profile``)."""

from __future__ import annotations

import argparse
import copy

import numpy as np
import torch

from quantization import int8_kernels
from quantization.measure import CALIB_BATCHES, calibration_batches, fixed_length_batch
from quantization.model import classifier_from_checkpoint
from quantization.qlinear import Int8WeightOnlyLinear, W8A8Linear, integer_product, linear_weight
from quantization.quantize import METHODS, quantize_model, target_layers
from shared_utils.checkpoint import load_best
from shared_utils.timing import interleaved, ratio, spread, time_by_op_family


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
        dynamic = [quantize_model(torch.nn.Sequential(copy.deepcopy(m)), METHODS["torch_dynamic_int8"]) for m in block]
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
    w8a8 = quantize_model(copy.deepcopy(fp32), METHODS["w8a8"], calibration=calibration)
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
