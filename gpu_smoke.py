"""`make gpu-smoke`: every project's default path at tiny scale on one GPU, in a few minutes, with local tiny
models and data instead of the hub; writes results/gpu_smoke.json (device, versions, and per step: pass/fail,
seconds, peak memory).

    python gpu_smoke.py                          # on a machine with CUDA (what `make gpu-smoke` runs)
    python gpu_smoke.py --device cpu --dry-run   # the same code on the CPU, tinier: what CI runs

Steps (each isolated: a failure is recorded, the rest still run):
- translation: train under bf16 autocast (on CUDA), then KV-cached greedy and beam decoding, our decoding
  speed against HF `generate()`, then the same training under `torchrun --nproc_per_node=1`;
- quantization: fine-tune the tiny GPT-2 classifier, then every method the benchmark runs on this device
  (scratch INT8, W8A8 through `torch._int_mm` with CUDA's shape rules, bitsandbytes int8/nf4/fp4), peak
  memory for each; and `torch._int_mm` itself on a shape its CUDA kernel takes and one it does not;
- moe_summarization: the layer's forward+backward against HF's Switch and Mixtral blocks, summarizer
  training, and the BART / T5 / Llama baselines on tiny local models saved with `save_pretrained`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

from shared_utils.cli import Parser
from shared_utils.errors import UserError, cli_main
from shared_utils.runtime import device_info, peak_memory, pick_device, reset_peak_memory

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"


def versions() -> dict:
    import importlib.metadata as md

    out = {"python": sys.version.split()[0]}
    for package in ("torch", "transformers", "datasets", "bitsandbytes", "torchao", "tokenizers"):
        try:
            out[package] = md.version(package)
        except md.PackageNotFoundError:
            out[package] = None
    out["cuda"] = torch.version.cuda
    return out


def run_step(name: str, fn: Callable[[], dict], device: torch.device) -> dict:
    """Run one step; its seconds, peak memory and details, or the error that stopped it."""
    reset_peak_memory(device)
    start = time.perf_counter()
    try:
        details, ok, error = fn() or {}, True, None
    except Exception as exc:  # a smoke test reports every failure and goes on
        details, ok = {}, False
        error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        traceback.print_exc()
    record = {"ok": ok, "seconds": round(time.perf_counter() - start, 2), **peak_memory(device), "details": details}
    if error:
        record["error"] = error
    print(f"[{'pass' if ok else 'FAIL'}] {name} ({record['seconds']} s)" + (f": {error}" if error else ""),
          flush=True)
    return record


class Smoke:
    """The steps, sharing a scratch folder and the runs they make."""

    def __init__(self, device: torch.device, work: Path, dry_run: bool):
        self.device, self.work, self.dry = device, work, dry_run
        self.steps = 5 if dry_run else 100
        self.where = str(device)

    # -- translation -----------------------------------------------------------------------------------
    def translation_argv(self, out: Path) -> list[str]:
        samples = ROOT / "translation" / "samples"
        return ["--out", str(out), "--preset", "tiny", "--vocab-size", "300", "--max-len", "32",
                "--train", str(samples / "train.fi-en.tsv"), "--dev", str(samples / "dev.fi-en.tsv"),
                "--steps", str(self.steps), "--eval-every", str(self.steps), "--batch-tokens", "800",
                "--select-size", "20", "--dev-limit", "20", "--device", self.where]

    def translation_train(self) -> dict:
        from translation.train import main

        main(self.translation_argv(self.work / "mt"))
        rows = [json.loads(line) for line in (self.work / "mt" / "metrics.jsonl").read_text().splitlines()]
        return {"steps": len(rows), "last_loss": rows[-1]["loss"], "bf16_autocast": self.device.type == "cuda"}

    def translation_decode(self) -> dict:
        from translation.data import load_parallel
        from translation.decoding import Strategy
        from translation.inference import load_translator, translate

        model, tok, cfg = load_translator(self.work / "mt", self.device)
        sources = [p.src for p in load_parallel(ROOT / "translation" / "samples" / "dev.fi-en.tsv")][:16]
        greedy = translate(model, tok, cfg, sources, self.device, Strategy("greedy"))
        beam = translate(model, tok, cfg, sources, self.device, Strategy("beam", beam_size=4))
        return {"sentences": len(sources), "greedy_nonempty": sum(bool(h) for h in greedy),
                "beam_nonempty": sum(bool(h) for h in beam)}

    def translation_decode_speed(self) -> dict:
        """Our greedy and beam 4 against HF ``generate()`` side by side (``bench_decoding.py --speed-only``)."""
        from translation.bench_decoding import random_batch, side_by_side
        from translation.config import model_config
        from translation.model import build_model

        cfg = model_config("tiny" if self.dry else "small")
        model = build_model(cfg).to(self.device).eval()
        batch, tokens = (8, 8) if self.dry else (32, 32)
        src = random_batch(cfg.vocab_size, batch, self.device)
        side = side_by_side(model, cfg, src, 4, tokens, 3 if self.dry else 5, 1 if self.dry else 3)
        return {k: side[k] for k in ("greedy_throughput_ratio_vs_hf_generate", "beam_throughput_ratio_vs_hf_generate",
                                     "ceiling_vs_hf_generate")}

    def translation_torchrun(self) -> dict:
        torchrun = Path(sys.executable).parent / "torchrun"
        cmd = [str(torchrun), "--standalone", "--nproc_per_node=1", "-m", "translation.train",
               *self.translation_argv(self.work / "mt-torchrun")]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
        if proc.returncode != 0:
            raise RuntimeError((proc.stderr.strip().splitlines() or ["torchrun failed"])[-1])
        return {"command": " ".join(cmd[:5]) + " ...", "returncode": proc.returncode}

    # -- quantization ----------------------------------------------------------------------------------
    def quant_train(self) -> dict:
        from quantization.config import make_config
        from quantization.training import train

        samples = ROOT / "quantization" / "samples"
        cfg = make_config("tiny", train=str(samples / "train.csv"), dev=str(samples / "dev.csv"), tiny_vocab=400,
                          tiny_layers=2, tiny_d_model=64, tiny_heads=2, max_len=32, batch_size=16,
                          epochs=0.2 if self.dry else 2.0, lr=2e-3, eval_every=1000, select_size=20)
        return {"best": train(cfg, self.work / "quant", self.device)}

    def quant_methods(self) -> dict:
        from quantization.measure import run_method
        from quantization.quantize import default_methods

        samples = ROOT / "quantization" / "samples"
        out = {}
        # the dry run checks the methods the GPU run will run (the CPU-only ones are quantization's own tests)
        for spec in default_methods(torch.device("cuda")):
            method = spec.name
            reset_peak_memory(self.device)
            try:
                r = run_method(str(self.work / "quant"), spec, str(samples / "dev.csv"), str(samples / "train.csv"),
                               limit=32, calib_batches=1, latency_blocks=1, device=self.where)
                out[method] = {"accuracy": r["accuracy"], "layer_bytes_ratio": r["quantized_layer_bytes_ratio"],
                               "b32_ms": r["latency_ms_b32"]["median_ms"], "peak_memory_mb": r["peak_memory_mb"]}
            except Exception as exc:  # one method failing is a finding, not the end of the step
                out[method] = {"error": f"{type(exc).__name__}: {exc}".splitlines()[0][:200]}
        failed = [m for m, r in out.items() if "error" in r]
        if failed:
            raise RuntimeError(f"methods failed: {', '.join(failed)}: {out[failed[0]]['error']}")
        return out

    def int_mm_shapes(self) -> dict:
        """W8A8's integer matmul on the device: cuBLASLt takes M > 16 with K, N multiples of 8; other shapes
        go to the exact float64 reference, and both must equal it."""
        from quantization.int8 import int8_matmul, int8_matmul_reference

        out = {}
        for m, k, n in ((32, 64, 32), (8, 60, 36)):
            a = torch.randint(-127, 128, (m, k), dtype=torch.int8, device=self.device)
            b = torch.randint(-127, 128, (k, n), dtype=torch.int8, device=self.device)
            fast = self.device.type == "cpu" or (m > 16 and k % 8 == 0 and n % 8 == 0)
            equal = torch.equal(int8_matmul(a, b), int8_matmul_reference(a, b))
            out[f"{m}x{k}x{n}"] = {"path": "torch._int_mm" if fast else "float64 reference", "exact": equal}
            if not equal:
                raise RuntimeError(f"int8 matmul {m}x{k}x{n} differs from the reference")
        return out

    # -- moe_summarization -----------------------------------------------------------------------------
    def moe_layer(self) -> dict:
        from moe_summarization.bench_moe import speed

        sizes = dict(batch=2, seq=64, d=64, f=128, experts=4) if self.dry else dict(batch=8, seq=512, d=512, f=2048,
                                                                                   experts=8)
        result = speed(**sizes, repeats=3 if self.dry else 5, device=self.device)
        return {k: result[k] for k in ("time_ratio_vs_dense", "time_ratio_vs_hf_switch", "time_ratio_vs_hf_mixtral")}

    def moe_train(self) -> dict:
        from moe_summarization.train import main

        samples = ROOT / "moe_summarization" / "samples"
        out = self.work / "moe"
        main(["--out", str(out), "--size", "tiny", "--variant", "moe_top2", "--vocab-size", "400",
              "--train", str(samples / "train.jsonl"), "--dev", str(samples / "dev.jsonl"), "--steps", str(self.steps),
              "--eval-every", str(self.steps), "--batch-tokens", "1500", "--select-size", "8", "--dev-limit", "8",
              "--device", self.where])
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        return {"steps": len(rows), "last_loss": rows[-1]["loss"]}

    def moe_baselines(self) -> dict:
        """Each baseline class saved with save_pretrained, loaded back through the baselines' own loader (bf16)
        and run with their real generation settings."""
        from moe_summarization.pretrained import BASELINES, Baseline, generate, load, tiny_baseline

        docs = ["The central bank raised rates by half a point to fight inflation.", "Snow closed the airport."]
        out = {}
        for name in BASELINES:
            folder = self.work / "baselines" / name
            model, tok = tiny_baseline(name)
            model.save_pretrained(folder)
            tok.save_pretrained(folder)
            baseline = Baseline(str(folder), BASELINES[name].kind, BASELINES[name].prefix)
            loaded, loaded_tok = load(baseline, self.device, name)
            summaries = generate(loaded if self.device.type == "cuda" else loaded.float(), loaded_tok, baseline, docs)
            out[name] = {"summaries": len(summaries), "dtype": str(next(loaded.parameters()).dtype)}
        return out

    def all(self) -> dict[str, Callable[[], dict]]:
        return {"translation_train": self.translation_train, "translation_decode": self.translation_decode,
                "translation_decode_speed": self.translation_decode_speed,
                "translation_torchrun": self.translation_torchrun, "quant_train": self.quant_train,
                "quant_methods": self.quant_methods, "int_mm_shapes": self.int_mm_shapes,
                "moe_layer": self.moe_layer, "moe_train": self.moe_train, "moe_baselines": self.moe_baselines}


@cli_main
def main(argv: list[str] | None = None) -> None:
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="auto or cuda[:N]; cpu only with --dry-run")
    p.add_argument("--dry-run", action="store_true", help="tinier steps (the CPU test of this script)")
    p.add_argument("--out", type=Path, default=RESULTS / "gpu_smoke.json")
    p.add_argument("--steps", nargs="+", default=None, help="run only these steps")
    args = p.parse_args(argv)
    device = pick_device(args.device)
    if device.type != "cuda" and not args.dry_run:
        raise UserError("no CUDA GPU is visible, so there is nothing to smoke-test here; on this machine run "
                        "`python gpu_smoke.py --device cpu --dry-run` (what CI runs)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tiny local models and data only: never the hub
    with tempfile.TemporaryDirectory() as tmp:
        smoke = Smoke(device, Path(tmp), args.dry_run)
        chosen = {k: v for k, v in smoke.all().items() if not args.steps or k in args.steps}
        steps = {name: run_step(name, fn, device) for name, fn in chosen.items()}
    result = {"device": device_info(device), "versions": versions(), "dry_run": args.dry_run,
              "passed": all(s["ok"] for s in steps.values()), "steps": steps}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(f"{sum(s['ok'] for s in steps.values())} of {len(steps)} steps passed on {result['device']['label']}; "
          f"{args.out}")
    if not result["passed"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
