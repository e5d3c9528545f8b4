"""The scale benchmark end to end at a test size: one process per precision, bytes and memory per size, speed-ups
paired by sweep, exponents fitted, published tables untouched."""

import json

import numpy as np
import pytest

from quantization import bench_scale


def test_the_scale_sweep_measures_each_precision_in_its_own_process(tmp_path, monkeypatch):
    calls = []
    real = bench_scale.run_worker
    monkeypatch.setattr(bench_scale, "run_worker", lambda *a, **k: calls.append(k["profile"]) or real(*a, **k))
    bench_scale.main(["--sizes", "gpt2-tiny", "--methods", "fp32,w8a8_dynamic", "--sweeps", "2",
                      "--out", str(tmp_path)])
    assert len(calls) == 2 * 2 and sum(calls) == 1  # fp32 profiled once
    result = json.loads((tmp_path / "scale.json").read_text())
    rows = {m: result["table"][m]["sizes"]["gpt2-tiny"] for m in result["methods"]}
    assert all("error" not in r for r in rows.values()), rows
    assert rows["fp32"]["quantized_layer_bytes"] == rows["fp32"]["fp32_layer_bytes"]
    assert rows["w8a8_dynamic"]["quantized_layer_bytes"] < 0.3 * rows["fp32"]["fp32_layer_bytes"]
    for r in rows.values():  # memory read, not computed: the process's own resident and peak sizes
        assert r["peak_memory_mb"] >= r["rss_after_quantize_mb"] > 0 and r["latency_ms_b8"]["repeats"] == 2
    assert rows["fp32"]["speedup_vs_fp32_b1"]["median"] == pytest.approx(1.0)
    assert 0 < rows["fp32"]["matmul_share_b8"] <= 1
    assert (tmp_path / "scale.md").is_file() and (tmp_path / "scale.png").is_file()


def test_exponents_are_the_log_log_slopes():
    rows = [{"parameters": p, "model_bytes": 4 * p, "peak_memory_mb": 100 + p / 1e6,
             "latency_ms_b1": {"median_ms": p ** 0.5}, "latency_ms_b8": {"median_ms": p ** 1.2}}
            for p in (1e6, 1e7, 1e8)]
    e = bench_scale.exponents(rows)
    assert e["model_bytes"] == pytest.approx(1.0) and e["latency_ms_b1"] == pytest.approx(0.5)
    assert e["latency_ms_b8"] == pytest.approx(1.2) and 0 < e["peak_memory_mb"] < 1
    assert bench_scale.exponents(rows[:1]) == {}
    assert np.isfinite(list(e.values())).all()
