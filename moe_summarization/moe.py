"""The sparse MoE layer: a drop-in replacement for a Transformer block's dense FFN.

Dispatch groups assignments per expert with one stable sort, then runs the experts one of two ways:

- ``padded`` (:func:`dispatch`): the kept tokens are copied into an (E, C, D) buffer and every expert runs at
  once in batched matmuls: fixed shapes, one kernel, but up to E*C - kept rows of padding are computed too;
- ``grouped`` (:func:`dispatch_grouped`): the sorted tokens stay one contiguous (kept, D) tensor and each
  expert multiplies its own segment (what a grouped GEMM kernel does in one launch): no padding.

Either way the gated outputs return by ``index_add`` (one, or one per expert); nothing loops over tokens.
:func:`moe_reference` is the plain loop-over-experts version kept beside them; a test proves all three equal
in outputs and gradients.

Capacity: C = ceil(capacity_factor * A / E) slots per expert; assignments beyond C (in the router's priority
order) are dropped and their tokens pass through the residual unchanged. ``capacity_factor=None`` is
dropless: C grows to the busiest expert's load.

Dimension legend: T tokens, D d_model, F d_ff, E experts, C slots per expert, A assignments.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .config import MoEConfig
from .routing import Routing, build_router, load_stats, router_z_loss, switch_aux_loss


def _activate(h: torch.Tensor, activation: str) -> torch.Tensor:
    if activation == "swiglu":
        gate, up = h.chunk(2, dim=-1)
        return F.silu(gate) * up
    return F.gelu(h) if activation == "gelu" else F.relu(h)


class FFN(nn.Module):
    """The dense position-wise FFN (the baseline, and what every expert computes)."""

    def __init__(self, d_model: int, d_ff: int, activation: str = "gelu", bias: bool = True):
        super().__init__()
        swiglu = activation == "swiglu"
        self.activation = activation
        self.fc_in = nn.Linear(d_model, d_ff * (2 if swiglu else 1), bias=bias and not swiglu)
        self.fc_out = nn.Linear(d_ff, d_model, bias=bias and not swiglu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc_out(_activate(self.fc_in(x), self.activation))


class Experts(nn.Module):
    """E FFNs, each with weight tensors of its own (as Hugging Face's Switch and Mixtral blocks keep them).

    Why not one stacked (E, D, F) parameter: the grouped path multiplies each expert's segment by that expert's
    matrices, and slicing a stacked parameter makes autograd assemble a new full (E, D, F) gradient from the E
    slices on every backward pass (a copy of all expert weights, twice per layer). Separate tensors receive
    their gradients in place. The padded path, which wants the stacked layout, stacks them per call instead.
    """

    def __init__(self, num_experts: int, d_model: int, d_ff: int, activation: str = "gelu", bias: bool = True):
        super().__init__()
        self.activation = activation
        width = d_ff * (2 if activation == "swiglu" else 1)
        bias = bias and activation != "swiglu"
        # the same init as nn.Linear, per expert, drawn as one (E, D, F) tensor as the stacked layout drew it
        # (so a seed gives the same weights as before)
        w_in = torch.empty(num_experts, d_model, width).uniform_(-1 / math.sqrt(d_model), 1 / math.sqrt(d_model))
        w_out = torch.empty(num_experts, d_ff, d_model).uniform_(-1 / math.sqrt(d_ff), 1 / math.sqrt(d_ff))
        self.w_in = nn.ParameterList(nn.Parameter(w.clone()) for w in w_in)  # E x (D, F')
        self.w_out = nn.ParameterList(nn.Parameter(w.clone()) for w in w_out)  # E x (F, D)
        self.b_in = nn.ParameterList(nn.Parameter(torch.zeros(width)) for _ in range(num_experts)) if bias \
            else None  # E x (F',)
        self.b_out = nn.ParameterList(nn.Parameter(torch.zeros(d_model)) for _ in range(num_experts)) if bias \
            else None  # E x (D,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (E, C, D) tokens grouped per expert -> (E, C, D), every expert in one batched matmul."""
        w_in, w_out = torch.stack(list(self.w_in)), torch.stack(list(self.w_out))  # (E, D, F'), (E, F, D)
        if self.b_in is None:
            return torch.bmm(_activate(torch.bmm(x, w_in), self.activation), w_out)
        b_in, b_out = torch.stack(list(self.b_in))[:, None], torch.stack(list(self.b_out))[:, None]  # (E, 1, .)
        h = _activate(torch.baddbmm(b_in, x, w_in), self.activation)  # (E, C, F)
        return torch.baddbmm(b_out, h, w_out)

    def one(self, e: int, x: torch.Tensor) -> torch.Tensor:
        """Expert ``e`` on x: (N, D) -> (N, D)."""
        if self.b_in is None:
            return _activate(x @ self.w_in[e], self.activation) @ self.w_out[e]
        h = _activate(torch.addmm(self.b_in[e], x, self.w_in[e]), self.activation)  # (N, F)
        return torch.addmm(self.b_out[e], h, self.w_out[e])


class MoEOutput(NamedTuple):
    out: torch.Tensor  # same shape as the input
    aux_loss: torch.Tensor  # scalar, already weighted: add it to the task loss
    stats: dict  # see routing.load_stats, plus the unweighted losses; empty at inference


def capacity_for(cfg: MoEConfig, num_assignments: int, training: bool = True) -> int | None:
    """Slots per expert, or None when dropless (``eval_capacity_factor`` applies outside training)."""
    factor = cfg.capacity_factor if training else cfg.eval_capacity_factor
    if factor is None:
        return None
    return max(1, math.ceil(factor * num_assignments / cfg.num_experts))


def _group(routing: Routing, num_experts: int, capacity: int | None):
    """Sort assignments by expert (stable: priority order kept inside each expert) and apply the capacity.

    Returns (assign (A_kept,) indices into the routing arrays, grouped by expert; their slot within the expert;
    their expert; C, the slots per expert actually needed; kept mask (A,) in routing order).
    """
    A = routing.expert_idx.numel()
    device = routing.expert_idx.device
    order = torch.argsort(routing.expert_idx, stable=True)  # (A,)
    expert_sorted = routing.expert_idx[order]  # (A,)
    counts = torch.bincount(routing.expert_idx, minlength=num_experts)  # (E,)
    starts = torch.cumsum(counts, 0) - counts  # (E,)
    rank = torch.arange(A, device=device) - starts[expert_sorted]  # (A,) slot within its expert
    busiest = int(counts.max()) if A else 0
    C = busiest if capacity is None else min(capacity, busiest)  # never more slots than needed
    keep_sorted = rank < C  # (A,)
    assign = order[keep_sorted]  # (A_kept,)
    kept = torch.zeros(A, dtype=torch.bool, device=device)
    kept[assign] = True
    return assign, rank[keep_sorted], expert_sorted[keep_sorted], C, kept


def dispatch(x: torch.Tensor, routing: Routing, experts: Experts, num_experts: int,
             capacity: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded dispatch on x: (T, D). Returns (output (T, D), kept mask (A,) in routing order)."""
    T, D = x.shape
    assign, rank, expert, C, kept = _group(routing, num_experts, capacity)
    slot = expert * C + rank  # (A_kept,) row in the (E*C) buffer
    tokens = routing.token_idx[assign]  # (A_kept,)
    buffer = x.new_zeros(num_experts * C, D).index_copy(0, slot, x[tokens])  # (E*C, D)
    y = experts(buffer.view(num_experts, C, D)).reshape(num_experts * C, D)  # (E*C, D)
    gated = y[slot] * routing.weight[assign].to(y.dtype).unsqueeze(-1)  # (A_kept, D)
    return x.new_zeros(T, D).index_add(0, tokens, gated), kept


def dispatch_grouped(x: torch.Tensor, routing: Routing, experts: Experts, num_experts: int,
                     capacity: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Grouped dispatch: no padding; each expert's matmuls cover exactly its contiguous segment, and its gated
    output is added straight into the result (no concatenation of the segments)."""
    T, D = x.shape
    assign, _, expert, _, kept = _group(routing, num_experts, capacity)
    tokens = routing.token_idx[assign]  # (A_kept,) grouped by expert
    gate = routing.weight[assign].to(x.dtype).unsqueeze(-1)  # (A_kept, 1)
    sizes = torch.bincount(expert, minlength=num_experts).tolist()  # one host sync for the segment sizes
    out = x.new_zeros(T, D)
    for e, (rows, tok, g) in enumerate(zip(x[tokens].split(sizes), tokens.split(sizes), gate.split(sizes))):
        if sizes[e]:  # an expert without tokens does no work (and gets no gradient)
            out.index_add_(0, tok, experts.one(e, rows) * g)  # (n_e, D) into their tokens' rows
    return out, kept


def moe_reference(x: torch.Tensor, routing: Routing, experts: Experts, num_experts: int,
                  capacity: int | None) -> torch.Tensor:
    """The obvious loop over experts, same priority rule: each expert serves its first ``capacity`` assignments."""
    out = torch.zeros_like(x)
    for e in range(num_experts):
        idx = (routing.expert_idx == e).nonzero().squeeze(1)  # (n_e,) in routing order
        if capacity is not None:
            idx = idx[:capacity]
        if idx.numel():
            tok = routing.token_idx[idx]
            out = out.index_add(0, tok, experts.one(e, x[tok]) * routing.weight[idx].unsqueeze(-1))
    return out


class MoELayer(nn.Module):
    """Router + experts + balancing losses. ``forward`` returns output, weighted aux loss and statistics."""

    def __init__(self, cfg: MoEConfig):
        super().__init__()
        self.cfg = cfg
        self.router = build_router(cfg)
        self.experts = Experts(cfg.num_experts, cfg.d_model, cfg.d_ff, cfg.activation, cfg.bias)

    def forward(self, x: torch.Tensor, token_ids: torch.Tensor | None = None) -> MoEOutput:
        cfg = self.cfg
        shape = x.shape
        flat = x.reshape(-1, shape[-1])  # (T, D)
        routing = self.router(flat, token_ids)
        # expert choice already respects its capacity; token choice is capped here
        capacity = None if cfg.router == "expert_choice" else capacity_for(cfg, routing.expert_idx.numel(),
                                                                             self.training)
        run = dispatch_grouped if cfg.dispatch == "grouped" else dispatch
        out, kept = run(flat, routing, self.experts, cfg.num_experts, capacity)

        if not self.training:  # nothing reads losses or statistics at inference; they cost host syncs per step
            return MoEOutput(out.reshape(shape), flat.new_zeros((), dtype=torch.float32), {})
        stats = load_stats(routing, kept, flat.shape[0], cfg.num_experts)
        aux = routing_losses(cfg, routing, stats)
        if cfg.bias_update_rate > 0:
            self.router.update_bias(torch.bincount(routing.expert_idx, minlength=cfg.num_experts))
        return MoEOutput(out.reshape(shape), aux, stats)


def routing_losses(cfg: MoEConfig, routing: Routing, stats: dict) -> torch.Tensor:
    """The weighted aux loss of one routing (Switch balance + ST-MoE z-loss, fp32 scalar); the unweighted
    values go into ``stats``. Routers without probabilities (hash) have none."""
    if routing.probs is None:
        return routing.token_idx.new_zeros((), dtype=torch.float32)
    balance = switch_aux_loss(routing.probs, routing.expert_idx, cfg.num_experts)
    z = router_z_loss(routing.logits)
    stats.update(switch_aux_loss=float(balance.detach()), z_loss=float(z.detach()))
    return cfg.aux_loss_weight * balance + cfg.z_loss_weight * z
