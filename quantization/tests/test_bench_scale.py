"""The scale benchmark end to end at a test size: one process per precision, bytes and memory per size, speed-ups
against fp32, exponents fitted."""

import json

import numpy as np
import pytest

from quantization import bench_scale


def test_the_scale_sweep_measures_each_precision_in_its_own_process(tmp_path, monkeypatch):
    calls = []
    real = bench_scale.run_worker
    monkeypatch.setattr(bench_scale, "run_worker", lambda *a, **k: calls.append(k["profile"]) or real(*a, **k))
    bench_scale.main(["--sizes", "gpt2-tiny", "--methods", "fp32,w8a8_dynamic", "--sweeps", "1",
                      "--out", str(tmp_path)])
    assert len(calls) == 2 and sum(calls) == 1  # fp32 profiled, in its first sweep
    result = json.loads((tmp_path / "scale.json").read_text())
    rows = {m: result["table"][m]["sizes"]["gpt2-tiny"] for m in result["methods"]}
    assert all("error" not in r for r in rows.values()), rows
    assert rows["fp32"]["quantized_layer_bytes"] == rows["fp32"]["fp32_layer_bytes"]
    assert rows["w8a8_dynamic"]["quantized_layer_bytes"] < 0.3 * rows["fp32"]["fp32_layer_bytes"]
    for r in rows.values():  # memory read, not computed: the process's own resident and peak sizes
        assert r["peak_memory_mb"] >= r["rss_after_quantize_mb"] > 0 and r["latency_ms_b8"]["repeats"] == 1
    assert rows["fp32"]["speedup_vs_fp32_b1"]["median"] == pytest.approx(1.0)
    assert 0 < rows["fp32"]["matmul_share_b8"] <= 1
    assert (tmp_path / "scale.md").is_file() and (tmp_path / "scale.png").is_file()
    assert len(rows["fp32"]["worker_seconds"]) == 1 and result["wall_minutes"] * 60 >= sum(
        r["worker_seconds"][0] for r in rows.values())
    assert f"Time: {result['wall_minutes']:.1f} minutes in all" in (tmp_path / "scale.md").read_text()


def test_exponents_are_the_log_log_slopes():
    rows = [{"parameters": p, "model_bytes": 4 * p, "peak_memory_mb": 100 + p / 1e6,
             "latency_ms_b1": {"median_ms": p ** 0.5}, "latency_ms_b8": {"median_ms": p ** 1.2}}
            for p in (1e6, 1e7, 1e8)]
    e = bench_scale.exponents(rows)
    assert e["model_bytes"] == pytest.approx(1.0) and e["latency_ms_b1"] == pytest.approx(0.5)
    assert e["latency_ms_b8"] == pytest.approx(1.2) and 0 < e["peak_memory_mb"] < 1
    assert bench_scale.exponents(rows[:1]) == {}
    assert np.isfinite(list(e.values())).all()


def test_sweeps_add_latency_rounds_and_speedups_pair_them(monkeypatch):
    """Later sweeps add their rounds to the first sweep's record; a speed-up pairs fp32's round i with the
    method's round i; GPT-2 Large runs its own number of sweeps; onnxruntime stays off the sizes past 2 GB."""
    ms = {"fp32": [100.0, 120.0, 110.0], "w8a8": [50.0, 40.0, 55.0], "onnxruntime_int8": [30.0, 30.0, 30.0]}
    seen = {}

    def fake(size, method, profile):
        i = seen.setdefault((size, method), 0)
        seen[(size, method)] += 1
        t = {"median_ms": ms[method][i], "iqr_ms": [ms[method][i]] * 2, "repeats": 1, "samples_ms": [ms[method][i]]}
        return {"size": size, "method": method, "parameters": 10, "latency_ms_b1": dict(t), "latency_ms_b8": dict(t)}

    monkeypatch.setattr(bench_scale, "run_worker", fake)
    runs = bench_scale.sweep(["gpt2", "gpt2-large"], ["fp32", "w8a8", "onnxruntime_int8"], sweeps=3, large_sweeps=1)
    assert seen[("gpt2", "fp32")] == 3 and seen[("gpt2-large", "w8a8")] == 1
    assert ("gpt2-large", "onnxruntime_int8") not in runs  # 3.1 GB of fp32 weights: more than one ONNX file holds
    assert runs[("gpt2", "w8a8")]["latency_ms_b8"]["samples_ms"] == [50.0, 40.0, 55.0]
    assert [len(runs[(s, "w8a8")]["worker_seconds"]) for s in ("gpt2", "gpt2-large")] == [3, 1]
    table = bench_scale.summarise(runs, ["gpt2"], ["fp32", "w8a8"])
    speedup = table["w8a8"]["sizes"]["gpt2"]["speedup_vs_fp32_b1"]
    assert speedup["per_round"] == pytest.approx([2.0, 3.0, 2.0]) and speedup["median"] == pytest.approx(2.0)
