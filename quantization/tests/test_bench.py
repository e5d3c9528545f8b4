"""The precision benchmark end to end at toy size: every results key the protocol names, and the device chosen
at the top reaching every eval.py process and the timing code."""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from quantization import bench, int8_kernels, probes, reports
from quantization.config import make_config
from quantization.quantize import default_methods
from quantization.training import train

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("bench") / "run"
    cfg = make_config("tiny", train=str(SAMPLES / "train.csv"), dev=str(SAMPLES / "dev.csv"), tiny_vocab=300,
                      tiny_layers=1, tiny_d_model=64, tiny_heads=2, max_len=32, batch_size=16, epochs=1.0,
                      lr=2e-3, eval_every=100, select_size=20)
    train(cfg, run, torch.device("cpu"))
    return run


def test_bench_writes_the_evidence_and_the_device_reaches_every_process(checkpoint, tmp_path, monkeypatch):
    commands, real_run = [], subprocess.run

    def recording_run(cmd, *args, **kw):
        if "quantization.eval" in cmd:
            commands.append(cmd)
        return real_run(cmd, *args, **kw)

    monkeypatch.setattr(bench.subprocess, "run", recording_run)
    bench.main(["--checkpoint", str(checkpoint), "--dev", str(SAMPLES / "dev.csv"), "--train",
                str(SAMPLES / "train.csv"), "--methods", "fp32,w8a8,torchao_int8_dynamic",
                "--calib-seeds", "0", "1", "--sweeps", "2", "--latency-blocks", "1", "--linear-repeats", "3",
                "--device", "cpu", "--limit", "40", "--out", str(tmp_path)])
    # 3 methods + a second w8a8 calibration subset, then one latency-only sweep of the 3
    assert len(commands) == 4 + 3
    assert all(cmd[cmd.index("--device") + 1] == "cpu" for cmd in commands)
    assert sum("--latency-only" in cmd for cmd in commands) == 3
    result = json.loads((tmp_path / "bench.json").read_text())
    assert result["device"]["device"] == "cpu" and result["device"]["label"].startswith("CPU (")
    methods = result["methods"]
    assert all(m["device"] == result["device"]["label"] for m in methods.values())  # what eval.py ran on
    for key in ("w8a8_linear_speedup_vs_fp32", "w8a8_model_speedup_vs_fp32_b32", "w8a8_model_speedup_vs_torchao_b32"):
        assert {"median", "iqr", "ci95", "per_round", "repeats", "verdict"} <= set(result[key])
    assert result["w8a8_model_speedup_vs_torchao_b32"]["torchao_method"] == "torchao_int8_dynamic"  # the one run
    assert result["w8a8_model_speedup_vs_fp32_b32"]["repeats"] == 2  # 2 sweeps x 1 block
    assert methods["w8a8"]["accuracy_per_seed"] and len(methods["w8a8"]["accuracy_per_seed"]) == 2
    assert methods["fp32"]["ci95_vs_fp32"] == [0.0, 0.0] and methods["fp32"]["verdict_vs_fp32"] == "tie"
    for m in methods.values():
        assert set(m["latency_ms_b32"]) == {"median_ms", "iqr_ms", "repeats", "samples_ms"}
        assert m["memory_kind"] == "cpu_peak_rss" and m["peak_memory_mb"] > 0
        lo, hi = m["ci95_vs_fp32"]
        assert lo <= m["diff_vs_fp32"] + 1e-9 and m["diff_vs_fp32"] <= hi + 1e-9
    assert "torch_dynamic_int8" in result["linear_speed"]["timings"]
    # the block's W8A8 profile: each pass of the fused forward timed alone, and the ceiling they leave
    phases = result["linear_speed"]["w8a8_phases"]
    own_gemm = int8_kernels.own_int8_gemm()  # then torch._int_mm is timed beside it, and the hardware's ceiling
    assert set(phases["timings"]) == {"fp32", "w8a8", "quantize", "quantize_dynamic", "int8_matmul", "dequantize",
                                      *(["int8_matmul_torch_int_mm"] if own_gemm else [])}
    assert all(t["repeats"] == 3 for t in phases["timings"].values())
    assert ("instruction_ceiling" in phases) is own_gemm
    assert set(phases["ceiling_vs_fp32"]) == {"median", "iqr", "ci95", "per_round", "repeats", "verdict"}
    t = {k: np.asarray(v["samples_ms"]) for k, v in phases["timings"].items()}
    rest = np.median(t["w8a8"] - t["quantize"] - t["int8_matmul"] - t["dequantize"])  # round by round
    assert (f"| the rest (Python, reshapes, allocation), round by round | {rest:.1f} [" in (tmp_path / "bench.md")
            .read_text()) and reports.phases_rest(phases["timings"])["median"] == pytest.approx(float(rest))
    # the whole model's profile: its linear layers timed alone, the rest by difference, the ceiling they leave
    mp = result["model_profile_b32"]
    assert mp["linear_layers"] == 4 and mp["rounds"] == 3  # one GPT-2 block: c_attn, c_proj, c_fc, c_proj
    assert set(mp["timings"]) == {"fp32", "w8a8", "fp32_linears", "w8a8_linears"}
    samples = {k: np.asarray(v["samples_ms"]) for k, v in mp["timings"].items()}
    for k in ("fp32", "w8a8"):
        rest = samples[k] - samples[f"{k}_linears"]
        assert mp["rest_ms"][k]["median"] == pytest.approx(float(np.median(rest)))
        assert mp["linear_share"][k]["median"] == pytest.approx(float(np.median(samples[f"{k}_linears"] / samples[k])))
    assert mp["ceiling_vs_fp32"]["median"] == pytest.approx(
        float(np.median(samples["fp32"] / (samples["w8a8"] - samples["w8a8_linears"]))))
    assert mp["speedup_vs_fp32"]["median"] == pytest.approx(float(np.median(samples["fp32"] / samples["w8a8"])))
    assert set(mp["time_by_op_family"]) == {"fp32", "w8a8"}
    ceiling = mp["ceiling_vs_fp32"]
    assert (f"Ceiling (Amdahl: fp32 over W8A8's rest, the whole model's speed-up with free linear layers): "
            f"{ceiling['median']:.2f}x [{ceiling['iqr'][0]:.2f}, {ceiling['iqr'][1]:.2f}].") in (
        tmp_path / "bench.md").read_text()
    assert {p.name for p in tmp_path.glob("*.png")} == {"bench_accuracy_vs_memory.png", "bench_latency.png"}
    assert "McNemar" in (tmp_path / "bench.md").read_text()


def test_linear_calls_returns_each_layer_with_the_input_it_received():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))

    class Kwargs(torch.nn.Module):  # the bench calls HF models with keyword inputs
        def __init__(self):
            super().__init__()
            self.net = model

        def forward(self, x):
            return self.net(x)

    x = torch.randn(5, 3)
    layers, inputs = probes.linear_calls(Kwargs(), ["net.2", "net.0"], {"x": x})
    assert layers == [model[0], model[2]]  # call order, not the order of the names
    assert torch.equal(inputs[0], x) and torch.equal(inputs[1], torch.relu(model[0](x)))
    assert not model[0]._forward_hooks and not model[2]._forward_hooks  # the hooks are gone


def test_default_methods_follow_the_device(monkeypatch):
    def names(device: str) -> set[str]:
        return {m.name for m in default_methods(torch.device(device))}

    monkeypatch.setattr(int8_kernels, "cpu_flags", lambda: {"avx2", "avx512f", "avx512_vnni"})
    assert "torch_dynamic_int8" in names("cpu") and "fp16" not in names("cpu")
    torchao = {"torchao_int8_dynamic", "torchao_int8_dynamic_compiled"}  # eager, and its compiled CPU recipe
    assert torchao <= names("cpu")
    monkeypatch.setattr(int8_kernels, "cpu_flags", lambda: {"avx2", "fma"})  # torch._int_mm: a scalar loop
    assert not torchao & names("cpu") and "w8a8" in names("cpu")
    cuda = names("cuda")
    assert "torch_dynamic_int8" not in cuda and "fp16" in cuda


@pytest.mark.skipif(not int8_kernels.has_avx2(), reason="the probes are AVX2 code")
def test_the_instruction_ceiling_is_the_ratio_of_the_probes_rates_round_by_round():
    ic = probes.instruction_ceiling(repeats=3)
    ms = {k: np.asarray(v["samples_ms"]) for k, v in ic["timings"].items()}
    rate = {k: int8_kernels.PROBE_PRODUCTS[k] * probes.PROBE_ITERS / ms[k] / 1e6 for k in ms}  # products per ns
    assert ic["products_per_ns"]["int16_madd"]["median"] == pytest.approx(float(np.median(rate["int16_madd"])))
    assert ic["int8_over_fp32"]["median"] == pytest.approx(float(np.median(rate["int16_madd"] / rate["fp32_fma"])))
    assert ic["int8_over_fp32"]["repeats"] == 3 and int8_kernels.PROBE_PRODUCTS == {"fp32_fma": 96, "int16_madd": 192}
    line = reports.instruction_ceiling_lines(ic)[0]
    assert line.endswith(f"ratio {ic['int8_over_fp32']['median']:.2f}x [{ic['int8_over_fp32']['iqr'][0]:.2f}, "
                         f"{ic['int8_over_fp32']['iqr'][1]:.2f}].")
