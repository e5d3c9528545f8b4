import math

import pytest
import torch

from moe_summarization.config import MoEConfig, with_balancer
from moe_summarization.moe import FFN, MoELayer, capacity_for, dispatch, moe_reference
from moe_summarization.routing import (
    HashRouter,
    Routing,
    TopKRouter,
    balanced_hash_table,
    router_z_loss,
    switch_aux_loss,
)
from shared_utils.errors import UserError


def cfg(**kw) -> MoEConfig:
    base = dict(d_model=16, d_ff=32, num_experts=4, k=2, capacity_factor=1.25)
    return MoEConfig(**{**base, **kw})


# ------------------------------------------------------------------------------------------- hash routing
def test_hash_table_is_deterministic_and_balanced_on_uniform_ids():
    table = balanced_hash_table(1000, 8, seed=3)
    assert torch.equal(table, balanced_hash_table(1000, 8, seed=3))
    assert not torch.equal(table, balanced_hash_table(1000, 8, seed=4))
    assert torch.bincount(table, minlength=8).tolist() == [125] * 8
    router = HashRouter(cfg(router="hash", hash_vocab_size=1000, num_experts=8), table)
    ids = torch.arange(1000).repeat(3)  # every id equally often
    r = router(torch.randn(3000, 16), ids)
    assert torch.bincount(r.expert_idx, minlength=8).tolist() == [375] * 8
    assert torch.equal(r.expert_idx, router(torch.randn(3000, 16), ids).expert_idx)  # input-independent
    assert torch.all(r.weight == 1)


def test_frequency_balanced_hash_table_balances_token_load():
    counts = [100, 90, 60, 50, 40, 30, 20, 10]  # a Zipf-ish corpus
    table = balanced_hash_table(8, 2, counts=counts)
    load = [sum(c for c, e in zip(counts, table.tolist()) if e == x) for x in range(2)]
    assert load == [200, 200]


# ---------------------------------------------------------------------------------------------- top-k
def test_topk_gate_weights_sum_to_one_and_k1_keeps_the_probability():
    torch.manual_seed(0)
    x = torch.randn(10, 16)
    r2 = TopKRouter(cfg(k=2))(x)
    assert torch.allclose(r2.weight.view(2, 10).sum(0), torch.ones(10))
    assert torch.equal(r2.token_idx, torch.arange(10).repeat(2))  # slot-major order
    r1 = TopKRouter(cfg(k=1))(x)
    assert torch.allclose(r1.weight, r1.probs.max(dim=-1).values)
    assert r1.logits.dtype == torch.float32


def test_own_balancer_bias_moves_toward_underloaded_experts():
    router = TopKRouter(cfg(k=1, bias_update_rate=0.1))
    router.update_bias(torch.tensor([10, 0, 5, 5]))
    assert torch.allclose(router.selection_bias, torch.tensor([-0.1, 0.1, 0.0, 0.0]))


# --------------------------------------------------------------------------------------------- capacity
def test_capacity_keeps_first_come_assignments_in_priority_order():
    """6 tokens, top-2, 2 experts, capacity 3: first choices fill slots before any second choice."""
    experts_first = torch.tensor([0, 0, 0, 0, 1, 1])
    experts_second = torch.tensor([1, 1, 1, 1, 0, 0])
    routing = Routing(torch.arange(6).repeat(2), torch.cat([experts_first, experts_second]),
                      torch.full((12,), 0.5), None, None)
    layer = MoELayer(cfg(num_experts=2, k=2, capacity_factor=0.5))  # ceil(0.5 * 12 / 2) = 3
    assert capacity_for(layer.cfg, 12) == 3
    _, kept = dispatch(torch.randn(6, 16), routing, layer.experts, 2, 3)
    # expert 0: first choices of tokens 0,1,2 (token 3 overflows; tokens 4,5's second choices too)
    # expert 1: first choices of tokens 4,5, then the second choice of token 0
    expected = torch.zeros(12, dtype=torch.bool)
    expected[[0, 1, 2, 4, 5, 6]] = True
    assert torch.equal(kept, expected)


# ------------------------------------------------------------------------ batched dispatch == reference
@pytest.mark.parametrize("dispatch", ["padded", "grouped"])
@pytest.mark.parametrize(
    "kw",
    [
        dict(k=1, capacity_factor=1.0),
        dict(k=2, capacity_factor=1.25),
        dict(k=2, capacity_factor=None),
        dict(k=1, capacity_factor=0.5, activation="swiglu"),
        dict(router="expert_choice", k=1, capacity_factor=1.0),
        dict(router="hash", hash_vocab_size=50, capacity_factor=1.0),
    ],
)
def test_batched_dispatch_equals_loop_reference_in_outputs_and_gradients(kw, dispatch):
    torch.manual_seed(0)
    layer = MoELayer(cfg(**kw, dispatch=dispatch))
    x = torch.randn(2, 24, 16, requires_grad=True)
    ids = torch.randint(0, 50, (2, 24))
    out = layer(x, ids).out
    grads = torch.autograd.grad(out.pow(2).sum(), [x, *layer.parameters()], allow_unused=True)

    flat = x.reshape(-1, 16)
    routing = layer.router(flat, ids)
    capacity = None if layer.cfg.router == "expert_choice" else capacity_for(layer.cfg, routing.expert_idx.numel())
    ref = moe_reference(flat, routing, layer.experts, layer.cfg.num_experts, capacity).reshape(x.shape)
    ref_grads = torch.autograd.grad(ref.pow(2).sum(), [x, *layer.parameters()], allow_unused=True)
    assert torch.allclose(out, ref, atol=1e-5)
    params = [x, *layer.parameters()]
    for p, g, r in zip(params, grads, ref_grads):  # None: an expert that got no token (padded: a zero gradient)
        zero = torch.zeros_like(p)
        assert torch.allclose(zero if g is None else g, zero if r is None else r, atol=1e-5)
    assert any(g is not None for g in grads[1:])


def test_dropped_tokens_output_zero_and_are_counted():
    torch.manual_seed(0)
    layer = MoELayer(cfg(k=1, capacity_factor=0.25))  # 1 slot per expert per 16 tokens
    result = layer(torch.randn(16, 16))
    assert result.stats["dropped_fraction"] == pytest.approx(1 - 4 / 16)
    assert (result.out.abs().sum(-1) == 0).sum() == 12  # residual alone carries the dropped tokens


@pytest.mark.parametrize("bias", [True, False])
def test_one_expert_equals_the_dense_ffn(bias):
    torch.manual_seed(0)
    dense = FFN(16, 32, bias=bias)
    layer = MoELayer(cfg(num_experts=1, k=1, capacity_factor=1.0, bias=bias))
    assert sum(p.numel() for p in layer.experts.parameters()) == sum(p.numel() for p in dense.parameters())
    experts = layer.experts
    with torch.no_grad():  # the dense weights into expert 0 (nn.Linear stores (out, in))
        experts.w_in[0].copy_(dense.fc_in.weight.t())
        experts.w_out[0].copy_(dense.fc_out.weight.t())
        if bias:
            experts.b_in[0].copy_(dense.fc_in.bias)
            experts.b_out[0].copy_(dense.fc_out.bias)
    x = torch.randn(3, 7, 16)
    assert torch.allclose(layer(x).out, dense(x), atol=1e-6)  # softmax over one expert gives weight 1


# --------------------------------------------------------------------------------------------- losses
def test_switch_aux_loss_is_one_for_a_uniform_router():
    probs = torch.full((8, 4), 0.25)
    assert switch_aux_loss(probs, torch.arange(8) % 4, 4).item() == pytest.approx(1.0)
    # total collapse onto one confident expert: N * 1 * 1 = 4
    collapsed = torch.tensor([[1.0, 0, 0, 0]]).repeat(8, 1)
    assert switch_aux_loss(collapsed, torch.zeros(8, dtype=torch.long), 4).item() == pytest.approx(4.0)


def test_z_loss_matches_a_hand_computation():
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])
    expected = (math.log(2.0) ** 2 + math.log(4.0) ** 2) / 2  # logsumexp rows: log 2, log(3+1)
    assert router_z_loss(logits).item() == pytest.approx(expected)


def test_layer_reports_stats_and_weighted_aux_loss():
    torch.manual_seed(0)
    layer = MoELayer(with_balancer(cfg(k=1), "switch_aux"))
    result = layer(torch.randn(64, 16))
    s = result.stats
    assert sum(s["tokens_per_expert"]) == 64 and len(s["tokens_per_expert"]) == 4
    load = torch.tensor(s["tokens_per_expert"], dtype=torch.float)  # the statistics, recomputed from the counts
    assert s["max_over_mean"] == pytest.approx(float(load.max() / 16))
    assert s["cv"] == pytest.approx(float(load.std(unbiased=False) / 16))
    assert 0 <= s["router_entropy"] <= math.log(4) + 1e-6
    assert result.aux_loss.item() == pytest.approx(0.01 * s["switch_aux_loss"])

    layer.eval()  # inference: no losses, no statistics (no host syncs on every decoding step)
    result = layer(torch.randn(64, 16))
    assert result.stats == {} and result.aux_loss.item() == 0.0


def test_config_validation():
    with pytest.raises(UserError, match="router must be one of"):
        cfg(router="random")
    with pytest.raises(UserError, match="k <= num_experts"):
        cfg(k=5)
    with pytest.raises(UserError, match="hash_vocab_size"):
        cfg(router="hash")
    with pytest.raises(UserError, match="balancer must be one of"):
        with_balancer(cfg(), "magic")


# ------------------------------------------------------------------------------------- balance experiment
def test_balance_experiment_records_load_history(tmp_path):
    import json

    from moe_summarization.balance import ExperimentConfig, late_summary, run

    rows = [{"document": f"news item {i} about markets and sports and weather today", "summary": "x"}
            for i in range(40)]
    data = tmp_path / "docs.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows))
    cfg = ExperimentConfig(data=str(data), documents=40, vocab_size=300, num_heads=2, seq_len=16, batch_size=2,
                           steps=3, moe=MoEConfig(d_model=16, d_ff=32, k=1))
    history = run(cfg, "own", progress=False)
    assert len(history["loss"]) == 3 and len(history["layers"]) == cfg.num_layers
    assert sum(history["layers"][0][0]["tokens_per_expert"]) == 2 * 16  # top-1: one assignment per token
    summary = late_summary(history)  # the last 10% of 3 steps is the last step, of the worst layer
    last = [layer[-1] for layer in history["layers"]]
    worst = max(last, key=lambda s: s["max_over_mean"])
    assert summary["max_over_mean_load"] == pytest.approx(worst["max_over_mean"])
    assert summary["dropped_fraction"] == pytest.approx(worst["dropped_fraction"])


def test_the_layer_benchmark_writes_its_ratios_report_and_plots(tmp_path):
    import json

    from moe_summarization.bench_moe import main

    main(["--quick", "--repeats", "2", "--out", str(tmp_path), "--device", "cpu"])
    result = json.loads((tmp_path / "moe_layer.json").read_text())
    for key in ("time_ratio_vs_dense", "time_ratio_vs_hf_switch", "time_ratio_vs_hf_mixtral"):
        assert {"median", "iqr", "repeats"} <= set(result[key]) and result[key]["repeats"] == 2
    speed = result["speed"]
    assert speed["time_ratio_vs_experts_only"]["repeats"] == 2 and "experts_only_top1_cf1.25" in speed["fwd_bwd_ms"]
    assert result["experiment"]["moe"]["k"] == 1 and set(result["balance"]) == {"none", "switch_aux", "z_loss", "own"}
    assert "top-1, capacity factor 1.25, 8 experts" in (tmp_path / "moe_layer.md").read_text()
    assert {p.name for p in tmp_path.glob("*.png")} == {"expert_load.png", "moe_speed.png"}


def test_the_experts_only_floor_runs_the_experts_on_the_routed_segment_sizes():
    """Each expert gets as many rows as the routed layer keeps for it (its load, capped at the capacity), and
    nothing else runs: the router gets no gradient."""
    from moe_summarization.bench_moe import experts_only_fn

    torch.manual_seed(0)
    layer = MoELayer(MoEConfig(d_model=16, d_ff=32, num_experts=4, k=1, capacity_factor=0.5, bias=False))
    x, grad = torch.randn(2, 24, 16), torch.randn(2, 24, 16)
    seen, one = {}, layer.experts.one
    layer.experts.one = lambda e, rows: seen.setdefault(e, rows.shape[0]) and one(e, rows)
    experts_only_fn(layer, x, grad)()
    with torch.no_grad():
        load = torch.bincount(layer.router(x.reshape(-1, 16), None).expert_idx, minlength=4)
    capacity = math.ceil(0.5 * 48 / 4)  # 6 slots per expert
    assert int(load.max()) > capacity  # the cap matters here
    assert [seen.get(e, 0) for e in range(4)] == load.clamp_max(capacity).tolist()
    assert all(p.grad is None for p in layer.router.parameters())
    assert all(w.grad is not None for e, w in enumerate(layer.experts.w_in) if seen.get(e))
