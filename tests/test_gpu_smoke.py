"""`make gpu-smoke` on a CPU: the one-sentence refusal, and the whole dry run (same code, tinier, --device cpu)
passing every step and writing the results file a GPU run writes."""

import json

import torch

import gpu_smoke
from quantization.quantize import default_methods
from shared_utils.testing import assert_one_line_error, run_cli


def test_without_a_gpu_it_stops_at_once_with_one_sentence(capsys, tmp_path):
    line = assert_one_line_error(run_cli(gpu_smoke.main, ["--device", "cpu", "--out", str(tmp_path / "x.json")],
                                         capsys), "no CUDA GPU is visible", "--dry-run")
    assert line and not (tmp_path / "x.json").exists()


def test_the_cpu_dry_run_passes_every_step(tmp_path, capsys):
    out = tmp_path / "gpu_smoke.json"
    code, stdout, err = run_cli(gpu_smoke.main, ["--device", "cpu", "--dry-run", "--out", str(out)], capsys)
    result = json.loads(out.read_text())
    failed = {k: v.get("error") for k, v in result["steps"].items() if not v["ok"]}
    assert code == 0 and result["passed"], failed
    assert set(result["steps"]) == {"translation_train", "translation_decode", "translation_decode_speed",
                                    "translation_torchrun", "quant_train", "quant_methods", "int_mm_shapes",
                                    "moe_layer", "moe_train", "moe_baselines"}
    for step in result["steps"].values():
        assert step["seconds"] >= 0 and step["memory_kind"] == "cpu_peak_rss" and step["peak_memory_mb"] > 0
    assert result["device"]["device"] == "cpu" and result["versions"]["torch"]
    methods = result["steps"]["quant_methods"]["details"]
    # the methods the GPU run runs, fp16 among them; none of the CPU-only ones (ONNX Runtime, quantize_dynamic)
    assert set(methods) == {m.name for m in default_methods(torch.device("cuda"))}
    assert "fp16" in methods and not {"onnxruntime_int8", "torch_dynamic_int8"} & set(methods)
    assert {"fp32", "w8a8", "bnb_int8", "bnb_nf4", "bnb_fp4"} <= set(methods)
    assert result["steps"]["translation_train"]["details"]["steps"] == 5
    assert set(result["steps"]["moe_baselines"]["details"]) == {"bart", "t5", "llama3"}
    speed = result["steps"]["translation_decode_speed"]["details"]
    assert speed["greedy_throughput_ratio_vs_hf_generate"]["repeats"] == 3 and set(speed["ceiling_vs_hf_generate"]) == {
        "greedy", "beam4"}
    assert "10 of 10 steps passed" in stdout
