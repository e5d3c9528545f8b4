"""The quantization studies' reports: ``bench.md`` and its plots (``bench.py``), from the JSON alone, so
``rederive_verdicts.py`` can render them again without measuring anything."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shared_utils.report import op_family_lines, pyplot, save_figure
from shared_utils.timing import spread


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


def fmt_timing(t: dict) -> str:
    return f"{t['median_ms']:.1f} [{t['iqr_ms'][0]:.1f}, {t['iqr_ms'][1]:.1f}]"


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
