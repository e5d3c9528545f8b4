"""Expert parallelism proven equal to the single-process layer: 2 processes (gloo on CPU), each with its own
tokens and half the experts, against one process holding every expert and running each rank's tokens.

Checked per rank: the output (so the same tokens are dropped: a dropped token outputs zero), the weighted aux
loss, the global load statistics; and every gradient: each rank's experts get the gradients of both ranks'
tokens, and the router's gradients summed over the ranks equal the single process's."""

from pathlib import Path

import pytest
import torch

from moe_summarization.config import MoEConfig, with_balancer
from moe_summarization.moe import MoELayer
from shared_utils.testing import torchrun

ROOT = Path(__file__).resolve().parents[2]

WORLD, TOKENS, D = 2, 24, 16
CASES = {
    "top1_capacity": dict(k=1, capacity_factor=1.0, balancer="switch_aux"),  # drops tokens
    "top2_dropless": dict(k=2, capacity_factor=None, balancer="z_loss"),
    "hash": dict(router="hash", hash_vocab_size=50, capacity_factor=None, balancer="none"),
    "expert_choice": dict(router="expert_choice", capacity_factor=1.0, balancer="none"),
    "top1_bias_balancer": dict(k=1, capacity_factor=None, balancer="own"),
}


def layer_for(case: str) -> MoELayer:
    kw = dict(CASES[case])
    balancer = kw.pop("balancer")
    torch.manual_seed(0)  # the same weights in every process
    layer = MoELayer(with_balancer(MoEConfig(d_model=D, d_ff=32, num_experts=4, **kw), balancer))
    return layer.train()


def inputs(rank: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(100 + rank)
    return (torch.randn(TOKENS, D, generator=g), torch.randint(0, 50, (TOKENS,), generator=g),
            torch.randn(TOKENS, D, generator=g))  # x, token ids, output gradient


WORKER = """
import os, sys, torch, torch.distributed as dist
sys.path.insert(0, {tests!r})
from test_expert_parallel import CASES, inputs, layer_for
from moe_summarization.expert_parallel import ExpertParallelMoE
dist.init_process_group("gloo")
rank = dist.get_rank()
for case in CASES:
    layer = ExpertParallelMoE(layer_for(case))
    x, ids, grad = inputs(rank)
    result = layer(x, ids)
    ((result.out * grad).sum() + result.aux_loss).backward()
    torch.save({{"out": result.out.detach(), "aux": result.aux_loss.detach(), "stats": result.stats,
                "grads": {{n: p.grad for n, p in layer.named_parameters() if p.grad is not None}},
                "bias": layer.router.state_dict().get("selection_bias"),
                "gathered": layer.gathered_experts().state_dict()}}, os.path.join({out!r}, f"{{case}}_rank{{rank}}.pt"))
dist.destroy_process_group()
"""


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    """Every case run once under ``torchrun --nproc_per_node=2`` (gloo), each rank's results saved."""
    out = tmp_path_factory.mktemp("ep")
    script = out / "worker.py"
    script.write_text(WORKER.format(tests=str(Path(__file__).parent), out=str(out)))
    proc = torchrun(str(script), nproc=WORLD, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_expert_parallel_layer_equals_the_single_process_layer(case, shards):
    got = [torch.load(shards / f"{case}_rank{r}.pt", weights_only=False) for r in range(WORLD)]

    reference = layer_for(case)
    reference_bias = reference.router.state_dict().get("selection_bias")
    start_bias = None if reference_bias is None else reference_bias.clone()
    loads, total = [], 0.0
    for rank in range(WORLD):
        x, ids, grad = inputs(rank)
        if start_bias is not None:  # every rank routes with the bias of the step's start, as the ranks do
            reference_bias.copy_(start_bias)
        result = reference(x, ids)
        total = total + (result.out * grad).sum() + result.aux_loss
        loads.append(torch.tensor(result.stats["tokens_per_expert"]))
        torch.testing.assert_close(got[rank]["out"], result.out.detach(), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(got[rank]["aux"], result.aux_loss.detach())
    total.backward()
    load = sum(loads)
    for rank in range(WORLD):
        assert got[rank]["stats"]["tokens_per_expert"] == load.tolist()  # the global load, on every rank
    local = reference.cfg.num_experts // WORLD
    for name, param in reference.named_parameters():
        if name.startswith("experts."):
            _, kind, e = name.split(".")
            owner, mine = divmod(int(e), local)
            expected = param.grad if param.grad is not None else torch.zeros_like(param)
            shard_grad = got[owner]["grads"].get(f"experts.{kind}.{mine}", torch.zeros_like(param))
            torch.testing.assert_close(shard_grad, expected, rtol=1e-5, atol=1e-6)
        elif param.grad is not None:  # the replicated router: its gradients summed over the ranks
            torch.testing.assert_close(sum(g["grads"][name] for g in got), param.grad, rtol=1e-5, atol=1e-6)
    for rank in range(WORLD):  # every rank can rebuild the whole layer's experts
        for name, tensor in reference.experts.state_dict().items():
            assert torch.equal(got[rank]["gathered"][name], tensor)
    if reference.cfg.bias_update_rate > 0:  # the bias balancer moved once, by the global load
        expected_bias = start_bias + reference.cfg.bias_update_rate * torch.sign(load.float().mean() - load.float())
        for rank in range(WORLD):
            torch.testing.assert_close(got[rank]["bias"], expected_bias)


# -------------------------------------------------------------------------------------- training under torchrun
def torchrun_train(run: Path, data: Path, *extra: str) -> None:
    argv = ["--out", str(run), "--size", "tiny", "--variant", "moe_top2", "--vocab-size", "300", "--train",
            str(data), "--dev", str(data), "--batch-tokens", "300", "--steps", "4", "--eval-every", "2",
            "--dev-limit", "2", "--select-size", "1", "--warmup", "2", "--lr", "3e-3", "--dropout", "0",
            "--balancer", "switch_aux", "--device", "cpu", *extra]  # a stateless balancer: DDP's ranks would
    # each move the bias balancer by their own load, expert parallelism by the global one (the layer test)
    proc = torchrun("-m", "moe_summarization.train", *argv, nproc=WORLD, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]


def losses(run: Path) -> list[float]:
    import json

    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    import json

    pairs = [("The central bank raised interest rates by half a point to fight inflation.", "bank raises rates"),
             ("Heavy snow closed the main airport for a second day.", "snow shuts airport"),
             ("The home team won the cup final after a penalty shoot-out.", "home team wins cup"),
             ("Scientists found water ice in a crater near the moon's south pole.", "ice found on moon")]
    path = tmp_path_factory.mktemp("ep-data") / "train.jsonl"
    path.write_text("\n".join(json.dumps({"document": d, "summary": s}) for d, s in pairs * 5) + "\n")
    return path


def test_training_with_sharded_experts_matches_ddp_and_resumes_exactly(corpus, tmp_path):
    from moe_summarization.inference import load_summarizer

    torchrun_train(tmp_path / "ddp", corpus)  # experts replicated, gradients all-reduced by DDP
    torchrun_train(tmp_path / "ep", corpus, "--expert-parallel", "2")  # experts sharded over the 2 ranks
    assert losses(tmp_path / "ep") == pytest.approx(losses(tmp_path / "ddp"), rel=1e-4, abs=1e-5)
    torchrun_train(tmp_path / "cut", corpus, "--expert-parallel", "2", "--time-budget-min", "1e-9")  # 1 step
    assert len(losses(tmp_path / "cut")) == 1
    torchrun_train(tmp_path / "cut", corpus, "--expert-parallel", "2")  # resumes in the same layout
    assert losses(tmp_path / "cut") == pytest.approx(losses(tmp_path / "ep"), rel=1e-6, abs=1e-7)
    model, _, cfg = load_summarizer(tmp_path / "ep", torch.device("cpu"))  # a single-process checkpoint
    assert sum(p.numel() for n, p in model.named_parameters() if ".experts." in n) > 0 and cfg.moe.num_experts == 4


def test_the_benchmark_row_times_the_sharded_layer_and_its_all_to_all():
    from moe_summarization.bench_moe import expert_parallel_row

    row = expert_parallel_row(tokens=64, d=32, f=64, experts=4, steps=3)
    assert row["world_size"] == 2 and row["backend"] == "gloo"
    assert row["ms_fwd_bwd"]["repeats"] == 3 and row["ms_all_to_all"]["median_ms"] > 0
    kept = row["bytes_per_token"] / (2 * 32 * 4)  # fp32 rows there and back, per kept assignment
    assert 0.5 <= kept <= 1.0 and row["bytes_per_token_fwd_bwd"] == 2 * row["bytes_per_token"]
