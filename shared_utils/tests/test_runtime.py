import random

import numpy as np
import pytest
import torch

import shared_utils.runtime as runtime
from shared_utils.errors import UserError, cli_main
from shared_utils.runtime import (
    device_info,
    inverse_sqrt_lr,
    pick_device,
    rng_state,
    seed_everything,
    set_rng_state,
)


def test_rng_state_round_trip_replays_every_generator():
    seed_everything(5)
    state = rng_state()
    first = (random.random(), np.random.rand(), torch.rand(3))
    set_rng_state(state)
    second = (random.random(), np.random.rand(), torch.rand(3))
    assert first[0] == second[0] and first[1] == second[1]
    assert torch.equal(first[2], second[2])


def test_pick_device():
    assert pick_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert pick_device("auto").type == "cpu"
        with pytest.raises(UserError, match="no CUDA GPU"):
            pick_device("cuda")


def test_cli_main_turns_user_errors_into_one_line(capsys):
    @cli_main
    def main():
        raise UserError("data.tsv:3: empty field 'target'")

    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "error: data.tsv:3: empty field 'target'\n"


def test_inverse_sqrt_schedule_warms_up_then_decays():
    peak, warm = 2e-3, 10
    assert inverse_sqrt_lr(0, peak, warm) == pytest.approx(peak / warm)
    assert inverse_sqrt_lr(warm - 1, peak, warm) == pytest.approx(peak)
    assert inverse_sqrt_lr(4 * warm - 1, peak, warm) == pytest.approx(peak / 2)


def _child_peak_rss() -> float:
    from shared_utils.runtime import peak_rss_mb

    return peak_rss_mb()


def test_a_spawned_child_reports_its_own_peak_rss_not_its_parents():
    """Linux keeps the parent's RSS at fork in the child's ru_maxrss; a benchmark measuring one model per spawned
    child (bench_training's peak memory) read the parent's size for every model until it used VmHWM."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from shared_utils.runtime import peak_rss_mb

    ballast = b"\x01" * (1536 * 2**20)  # 1.5 GB touched: far more than a child that imports torch holds
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        child = pool.submit(_child_peak_rss).result()
    assert len(ballast) and peak_rss_mb() > 1536
    assert child < peak_rss_mb() - 1024, (child, peak_rss_mb())


def test_cpu_results_name_the_cpu_model_and_its_matmul_instruction_sets(monkeypatch):
    """Two CPUs' timings differ by more than our margins, so a results label must tell them apart."""
    xeon = {"model name": "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz",
            "flags": "fpu avx2 avx512f avx512_vnni avx512_bf16 amx_tile"}
    monkeypatch.setattr(runtime, "read_cpuinfo", lambda: xeon)
    info = device_info("cpu")
    assert info["cpu_model"] == xeon["model name"]
    assert info["cpu_features"] == ["AVX-512 VNNI", "AVX-512 BF16", "AMX"]
    assert info["label"].startswith("CPU (Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz, ")
    assert ", AVX-512 VNNI, AVX-512 BF16, AMX; " in info["label"]
    monkeypatch.setattr(runtime, "read_cpuinfo", lambda: {"model name": "AMD EPYC", "flags": "fpu avx2 fma"})
    assert device_info("cpu")["label"].startswith(f"CPU (AMD EPYC, {info['cpu']}; {info['threads']} threads")
    monkeypatch.setattr(runtime, "read_cpuinfo", dict)  # no /proc/cpuinfo (macOS, Windows)
    assert device_info("cpu")["label"].startswith(f"CPU ({info['cpu']}; ")


def test_read_cpuinfo_keeps_the_first_processors_fields():
    fields = runtime.read_cpuinfo()
    if fields:  # Linux
        with open("/proc/cpuinfo") as f:
            first = f.read().split("\n\n")[0]
        assert fields["processor"] == "0"
        lines = first.splitlines()
        assert len(fields) == len(lines)
        assert all(any(line.startswith(k) and line.rstrip().endswith(v) for line in lines) for k, v in fields.items())
