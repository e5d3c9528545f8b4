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
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from quantization.config import LABELS
from quantization.data import load_labelled
from quantization.probes import linear_speed, whole_model_profile
from quantization.quantize import default_methods, get_method
from quantization.reports import plot, write_markdown
from shared_utils.checkpoint import check_project, load_best
from shared_utils.cli import Parser, add_results_flags, nonnegative_int, positive_int, results_folder
from shared_utils.errors import UserError, cli_main
from shared_utils.runtime import device_info, pick_device
from shared_utils.stats import bootstrap_items, comparison, mcnemar_p
from shared_utils.timing import Timing, ratio

RESULTS = Path(__file__).resolve().parent / "results"
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
    specs = [get_method(m.strip()) for m in args.methods.split(",") if m.strip()] if args.methods \
        else default_methods(device)
    methods = [spec.name for spec in specs]  # the results are keyed by name, and eval.py is passed one
    if methods[0] != "fp32":
        raise UserError("--methods must start with fp32 (the reference for agreement)")
    ckpt = load_best(args.checkpoint)
    check_project(ckpt, "quantization", "pass a quantization run folder (quantization/train.py --out)")
    dev_rows = load_labelled(args.dev, num_labels=len(LABELS)).require("--dev").records
    labels = np.asarray([e.label for e in (dev_rows[: args.limit] if args.limit else dev_rows)])
    where = str(device)

    results: dict[str, dict] = {}
    for spec, method in zip(specs, methods):  # sweep 1: accuracy, bytes, memory and the first latency samples
        seeds = args.calib_seeds if spec.calibrated else [0]
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
        torchao = [spec.name for spec in specs if spec.kind == "torchao" and spec.name in ok]
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
