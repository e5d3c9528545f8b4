import random

import numpy as np
import pytest
import torch

from shared_utils.errors import UserError, cli_main
from shared_utils.runtime import (
    cosine_lr,
    inverse_sqrt_lr,
    measure_latency,
    module_bytes,
    peak_rss_mb,
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


def test_module_bytes_counts_stored_bytes_and_tied_weights_once():
    lin = torch.nn.Linear(10, 4)  # 40 + 4 fp32 values
    assert module_bytes(lin).parameters == 44 * 4
    lin.register_buffer("scale", torch.zeros(8, dtype=torch.int8))
    assert module_bytes(lin).buffers == 8
    emb = torch.nn.Embedding(100, 16)
    head = torch.nn.Linear(16, 100, bias=False)
    head.weight = emb.weight
    assert module_bytes(torch.nn.ModuleList([emb, head])).total == 100 * 16 * 4
    assert module_bytes(lin.to(torch.float16)).parameters == 44 * 2


def test_measure_latency_orders_percentiles():
    calls = []
    lat = measure_latency(lambda: calls.append(1), warmup=2, iters=5)
    assert len(calls) == 7 and lat.iters == 5
    assert 0 <= lat.p50_ms <= lat.p90_ms
    assert peak_rss_mb() > 10


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


def test_lr_schedules_warm_up_then_decay():
    peak, warm, total = 2e-3, 10, 110
    cos = [cosine_lr(s, peak, warm, total) for s in range(total)]
    assert cos[warm - 1] == pytest.approx(peak) and cos[0] == pytest.approx(peak / warm)
    assert all(a >= b for a, b in zip(cos[warm - 1:], cos[warm:]))  # monotone after the warmup
    assert cos[warm - 1 + 50] == pytest.approx(peak / 2, rel=0.02)  # half-way through the decay
    assert 0 < cos[-1] < 1e-3 * peak  # the last step is tiny, and still a step
    assert inverse_sqrt_lr(warm - 1, peak, warm) == pytest.approx(peak)
    assert inverse_sqrt_lr(4 * warm - 1, peak, warm) == pytest.approx(peak / 2)
