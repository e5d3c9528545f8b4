"""Expert parallelism: the experts of an MoE layer sharded over P processes, tokens carried to their experts
and back by all-to-all (GShard, Switch, DeepSpeed-MoE, megablocks).

Each rank of the expert-parallel group holds E / P experts (rank r: experts r*E/P ... (r+1)*E/P - 1) and its
own tokens. Per layer and step:

    route locally (the router is replicated)           assignments (token, expert, gate)
    group by expert, apply capacity locally            exactly as the single-process layer does (GShard's
                                                       per-group capacity), so the same tokens are dropped
    exchange the per-expert counts (all_to_all)        every rank learns how many rows it will receive
    send the kept tokens to the experts' ranks         all_to_all_single with variable split sizes
    run the local experts on what arrived              the same per-expert matmuls as the grouped path
    send the outputs back, gate and add them           the reverse all_to_all_single

The all-to-all is differentiable (:class:`AllToAll`: its backward is the reverse exchange), so expert weights
get the gradients of every rank's tokens and each rank's tokens get their experts' gradients. Load statistics
and the bias balancer use the *global* expert load (an all-reduce of the counts).

A test spawns 2 processes (gloo on CPU; the same code runs under NCCL) and checks outputs, aux losses, which
tokens are dropped and every parameter's gradient against the single-process layer run on each rank's tokens.

Dimension legend: T tokens on this rank, D d_model, E experts, P expert-parallel ranks, L = E / P local experts.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from .moe import Experts, MoELayer, MoEOutput, _group, capacity_for, routing_losses


class AllToAll(torch.autograd.Function):
    """``all_to_all_single`` with variable splits; its gradient is the same exchange in reverse."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, send: list[int], recv: list[int], group) -> torch.Tensor:
        ctx.send, ctx.recv, ctx.group = send, recv, group
        out = x.new_empty((sum(recv), *x.shape[1:]))
        dist.all_to_all_single(out, x.contiguous(), output_split_sizes=recv, input_split_sizes=send, group=group)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        back = grad.new_empty((sum(ctx.send), *grad.shape[1:]))
        dist.all_to_all_single(back, grad.contiguous(), output_split_sizes=ctx.send, input_split_sizes=ctx.recv,
                               group=ctx.group)
        return back, None, None, None


def exchange_counts(per_expert: torch.Tensor, ranks: int, group) -> torch.Tensor:
    """(E,) rows this rank sends to each expert -> (P, L) rows each rank sends to this rank's experts."""
    received = torch.empty_like(per_expert)
    dist.all_to_all_single(received, per_expert.contiguous(), group=group)  # equal splits: L counts per rank
    return received.view(ranks, -1)


class ExpertParallelMoE(nn.Module):
    """An :class:`MoELayer` whose experts live on P ranks; ``forward`` returns the same :class:`MoEOutput`."""

    def __init__(self, layer: MoELayer, group=None):
        super().__init__()
        self.cfg, self.group = layer.cfg, group
        self.ranks, self.rank = dist.get_world_size(group), dist.get_rank(group)
        if self.cfg.num_experts % self.ranks:
            raise ValueError(f"{self.cfg.num_experts} experts cannot be split evenly over {self.ranks} ranks")
        self.local = self.cfg.num_experts // self.ranks
        self.first = self.rank * self.local  # the global index of this rank's first expert
        self.router = layer.router
        self.experts = Experts(self.local, self.cfg.d_model, self.cfg.d_ff, self.cfg.activation, self.cfg.bias)
        shard = [f"{e}" for e in range(self.first, self.first + self.local)]
        own = {k: v for k, v in layer.experts.state_dict().items() if k.split(".")[1] in shard}
        self.experts.load_state_dict({f"{k.split('.')[0]}.{int(k.split('.')[1]) - self.first}": v
                                      for k, v in own.items()})

    def forward(self, x: torch.Tensor, token_ids: torch.Tensor | None = None) -> MoEOutput:
        cfg, P, L = self.cfg, self.ranks, self.local
        shape = x.shape
        flat = x.reshape(-1, shape[-1])  # (T, D)
        routing = self.router(flat, token_ids)
        capacity = None if cfg.router == "expert_choice" else capacity_for(cfg, routing.expert_idx.numel(),
                                                                             self.training)
        assign, _, expert, _, kept = _group(routing, cfg.num_experts, capacity)  # sorted by expert, hence by rank
        tokens = routing.token_idx[assign]  # (A_kept,)
        gate = routing.weight[assign].to(x.dtype).unsqueeze(-1)  # (A_kept, 1)
        per_expert = torch.bincount(expert, minlength=cfg.num_experts)  # (E,) rows sent to each expert
        incoming = exchange_counts(per_expert, P, self.group)  # (P, L) rows each rank sends to my experts
        send = per_expert.view(P, L).sum(1).tolist()
        recv = incoming.sum(1).tolist()
        arrived = AllToAll.apply(flat[tokens], send, recv, self.group)  # (N, D): by source rank, then expert
        y = self._local_experts(arrived, incoming)  # (N, D)
        back = AllToAll.apply(y, recv, send, self.group)  # (A_kept, D) in the order the rows were sent
        out = flat.new_zeros(flat.shape).index_add(0, tokens, back * gate)

        if not self.training:
            return MoEOutput(out.reshape(shape), flat.new_zeros((), dtype=torch.float32), {})
        load = torch.bincount(routing.expert_idx, minlength=cfg.num_experts)  # (E,) before capacity
        stats = self._global_stats(load, kept)
        aux = routing_losses(cfg, routing, stats)  # on this rank's tokens, as the single-process layer
        if cfg.bias_update_rate > 0:
            self.router.update_bias(torch.tensor(stats["tokens_per_expert"], device=flat.device))
        return MoEOutput(out.reshape(shape), aux, stats)

    def _local_experts(self, arrived: torch.Tensor, incoming: torch.Tensor) -> torch.Tensor:
        """Each local expert on its rows from every source rank (one matmul per expert, as the grouped path)."""
        sizes = incoming.reshape(-1).tolist()  # (P*L,) segments: source-major, expert-minor
        segments = list(arrived.split(sizes))
        order, outputs = [], []
        for e in range(self.local):
            rows = [segments[s * self.local + e] for s in range(self.ranks)]
            order += [s * self.local + e for s in range(self.ranks)]
            n = sum(r.shape[0] for r in rows)
            outputs.append(self.experts.one(e, torch.cat(rows)) if n else arrived.new_zeros((0, arrived.shape[1])))
        by_expert = torch.cat(outputs)  # (N, D) expert-major
        split = by_expert.split([sizes[i] for i in order])
        placed = [None] * len(sizes)
        for i, piece in zip(order, split):
            placed[i] = piece
        return torch.cat(placed)  # back to source-major order

    def _global_stats(self, load: torch.Tensor, kept: torch.Tensor) -> dict:
        """Load statistics over every rank's tokens: all-reduced counts (what a balancer should see)."""
        totals = torch.cat([load.float(), torch.tensor([float(kept.numel()), float(kept.sum())], device=load.device)])
        dist.all_reduce(totals, group=self.group)
        global_load, assigned, kept_rows = totals[:-2], totals[-2], totals[-1]
        mean = global_load.mean().clamp_min(1e-9)
        return {"tokens_per_expert": [int(v) for v in global_load.tolist()],
                "cv": float(global_load.std(unbiased=False) / mean), "max_over_mean": float(global_load.max() / mean),
                "dropped_fraction": float(1 - kept_rows / assigned) if assigned else 0.0,
                "unused_experts": int((global_load == 0).sum())}

    def gathered_experts(self) -> Experts:
        """Every expert of the group, on every rank (for a single-process checkpoint)."""
        full = Experts(self.cfg.num_experts, self.cfg.d_model, self.cfg.d_ff, self.cfg.activation, self.cfg.bias)
        state = {}
        for name, tensor in self.experts.state_dict().items():
            kind, e = name.split(".")
            parts = [torch.empty_like(tensor) for _ in range(self.ranks)]
            dist.all_gather(parts, tensor.contiguous(), group=self.group)
            for r, part in enumerate(parts):
                state[f"{kind}.{r * self.local + int(e)}"] = part
        full.load_state_dict(state)
        return full


# -- training a model whose MoE layers are sharded -----------------------------------------------------------
def shard_experts(model: nn.Module, group=None) -> nn.Module:
    """Replace every :class:`MoELayer` of ``model`` (in place) by an :class:`ExpertParallelMoE` holding this
    rank's experts. The model must be identical on every rank (same seed, or the same checkpoint)."""
    for name, module in list(model.named_modules()):
        if isinstance(module, MoELayer):
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, ExpertParallelMoE(module, group))
    return model


def is_expert_param(name: str) -> bool:
    return ".experts." in f".{name}"


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The single-process model's state dict: every sharded layer's experts gathered (a collective: every rank
    calls it). Router and everything else are replicated, under the same names as in :class:`MoELayer`."""
    state = {k: v for k, v in model.state_dict().items() if not is_expert_param(k)}
    for name, module in model.named_modules():
        if isinstance(module, ExpertParallelMoE):
            state.update({f"{name}.experts.{k}": v for k, v in module.gathered_experts().state_dict().items()})
    return state


def sync_and_clip(model: nn.Module, max_norm: float, group=None) -> None:
    """What DDP plus ``clip_grad_norm_`` do for a replicated model, for one whose experts are sharded: the
    replicated parameters' gradients are averaged over the ranks (all-reduce); the experts' already hold every
    rank's tokens (the all-to-all backward brought them), so they are only divided by the ranks, as the average
    of the ranks' losses asks. The clipping norm counts every expert once, on every rank alike."""
    ranks = dist.get_world_size(group)
    shared = [p for n, p in model.named_parameters() if not is_expert_param(n)]
    experts = [p for n, p in model.named_parameters() if is_expert_param(n) and p.grad is not None]
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in shared])
    dist.all_reduce(flat, group=group)
    flat /= ranks
    offset = 0
    for p in shared:
        n = p.numel()
        p.grad = flat[offset: offset + n].view_as(p).clone()
        offset += n
    for p in experts:
        p.grad /= ranks
    expert_sq = torch.stack([p.grad.float().pow(2).sum() for p in experts]).sum() if experts \
        else flat.new_zeros((), dtype=torch.float32)
    dist.all_reduce(expert_sq, group=group)
    total = (flat.float().pow(2).sum() + expert_sq).sqrt()
    scale = (max_norm / (total + 1e-6)).clamp(max=1.0)
    for p in [*shared, *experts]:
        p.grad.mul_(scale)
