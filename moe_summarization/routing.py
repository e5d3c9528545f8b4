"""Routers for the sparse MoE layer, and the balancing losses and statistics computed from their output.

Every router returns a :class:`Routing`: a flat list of *assignments* (token -> expert, with a gate weight),
so one dispatch function serves token-choice, hash and expert-choice routing alike.

Dimension legend: T tokens (batch x seq, flattened), D d_model, E experts, K experts per token,
A assignments (T*K for token choice, E*C for expert choice).

Papers: Switch Transformers (Fedus et al. 2021) for top-1 and the auxiliary loss; GShard / Mixtral for top-2
with renormalised weights; ST-MoE (Zoph et al. 2022) for the z-loss; Hash Layers (Roller et al. 2021);
Expert Choice (Zhou et al. 2022); DeepSeek-V3 (2024) for auxiliary-loss-free balancing with a routing bias.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .config import MoEConfig


@dataclass
class Routing:
    """Assignments in priority order: when an expert overflows, earlier assignments keep their slot."""

    token_idx: torch.Tensor  # (A,) long, which token
    expert_idx: torch.Tensor  # (A,) long, which expert
    weight: torch.Tensor  # (A,) gate weight multiplied into the expert's output
    logits: torch.Tensor | None  # (T, E) fp32 router logits; None for hash routing
    probs: torch.Tensor | None  # (T, E) fp32 softmax of the logits


# ------------------------------------------------------------------------------------------ pure losses
def switch_aux_loss(probs: torch.Tensor, expert_idx: torch.Tensor, num_experts: int) -> torch.Tensor:
    """Switch load-balancing loss N * sum_i f_i * P_i (without alpha); its minimum, 1.0, is a uniform router.

    f_i is the fraction of assignments routed to expert i (before capacity drops), P_i the mean router
    probability of expert i. f is not differentiable; the gradient flows through P.

    Example: 2 experts, every token has probs (0.5, 0.5) and the tokens split evenly: 2 * (0.5*0.5 + 0.5*0.5) = 1.
    """
    f = torch.bincount(expert_idx, minlength=num_experts).float() / max(expert_idx.numel(), 1)  # (E,)
    p = probs.mean(dim=0)  # (E,)
    return num_experts * torch.sum(f * p)


def router_z_loss(logits: torch.Tensor) -> torch.Tensor:
    """ST-MoE z-loss: mean over tokens of logsumexp(logits)^2; keeps router logits small and stable."""
    return torch.logsumexp(logits, dim=-1).pow(2).mean()


def load_stats(routing: Routing, kept: torch.Tensor, num_tokens: int,
               num_experts: int) -> dict[str, float | list[int]]:
    """Per-step routing statistics (plain Python numbers, ready for metrics.jsonl).

    Load counts routed assignments before capacity drops, so overflow shows as imbalance, not as a hidden cap.
    ``dropped_fraction`` is the share of assignments that lost their slot; ``unrouted_fraction`` the share of
    tokens left with no expert at all (they pass through the residual connection unchanged).
    """
    expert_idx, probs = routing.expert_idx, routing.probs
    load = torch.bincount(expert_idx.detach(), minlength=num_experts).float()  # (E,)
    mean = load.mean().clamp_min(1e-9)
    entropy = float("nan")
    if probs is not None:
        p = probs.detach()
        entropy = float(-(p * p.clamp_min(1e-12).log()).sum(-1).mean())
    return {
        "tokens_per_expert": [int(x) for x in load.tolist()],
        "cv": float(load.std(unbiased=False) / mean),
        "max_over_mean": float(load.max() / mean),
        "dropped_fraction": float(1.0 - kept.float().mean()) if kept.numel() else 0.0,
        "router_entropy": entropy,
        "unused_experts": int((load == 0).sum()),
        "unrouted_fraction": 1.0 - routing.token_idx[kept].unique().numel() / max(num_tokens, 1),
    }


# ------------------------------------------------------------------------------------------------ routers
class TopKRouter(nn.Module):
    """Token choice: each token picks its k highest-scoring experts (softmax gate, computed in fp32).

    Gate weights: for k = 1 the raw probability (Switch; renormalising would make it 1 and cut the router's
    gradient); for k > 1 the chosen probabilities renormalised to sum to 1 (GShard, Mixtral).
    With ``bias_update_rate > 0`` a per-expert bias is added to the scores used for *selection only*
    (DeepSeek-V3): after each training step it moves towards under-loaded experts, so balance needs no
    auxiliary loss and the gate weights stay the router's own probabilities.
    """

    def __init__(self, cfg: MoEConfig):
        super().__init__()
        self.k, self.num_experts, self.jitter = cfg.k, cfg.num_experts, cfg.jitter
        self.bias_update_rate = cfg.bias_update_rate
        self.gate = nn.Linear(cfg.d_model, cfg.num_experts, bias=False)
        nn.init.normal_(self.gate.weight, std=0.02)
        self.register_buffer("selection_bias", torch.zeros(cfg.num_experts))  # (E,)

    def forward(self, x: torch.Tensor, token_ids: torch.Tensor | None = None) -> Routing:
        x = x.float()  # (T, D) router in fp32 ("selective precision", Switch section 2.4)
        if self.training and self.jitter > 0:
            x = x * torch.empty_like(x).uniform_(1.0 - self.jitter, 1.0 + self.jitter)
        logits = F.linear(x, self.gate.weight.float())  # (T, E)
        probs = logits.softmax(dim=-1)  # (T, E)
        scores = probs + self.selection_bias if self.bias_update_rate > 0 else probs
        chosen = scores.topk(self.k, dim=-1).indices  # (T, K)
        weight = probs.gather(1, chosen)  # (T, K)
        if self.k > 1:
            weight = weight / weight.sum(dim=-1, keepdim=True)
        T = x.shape[0]
        # slot-major order: every token's first choice has priority over any token's second choice (GShard)
        token_idx = torch.arange(T, device=x.device).repeat(self.k)  # (K*T,)
        return Routing(token_idx, chosen.t().reshape(-1), weight.t().reshape(-1), logits, probs)

    @torch.no_grad()
    def update_bias(self, load: torch.Tensor) -> None:
        """DeepSeek-V3's rule: bias_i += rate * sign(mean load - load_i)."""
        if self.bias_update_rate > 0:
            self.selection_bias += self.bias_update_rate * torch.sign(load.float().mean() - load.float())


def balanced_hash_table(vocab_size: int, num_experts: int, *, counts: Sequence[int] | None = None,
                        seed: int = 0) -> torch.Tensor:
    """Token id -> expert table, balanced over the vocabulary.

    Without ``counts``: a seeded random permutation dealt round-robin (each expert gets vocab/E ids).
    With token ``counts`` from the training corpus: greedy longest-processing-time assignment, heaviest token
    first to the currently lightest expert, so expected *token* load is balanced, not just id counts.
    """
    if counts is None:
        perm = torch.randperm(vocab_size, generator=torch.Generator().manual_seed(seed))
        table = torch.empty(vocab_size, dtype=torch.long)
        table[perm] = torch.arange(vocab_size) % num_experts
        return table
    if len(counts) != vocab_size:
        raise ValueError(f"counts has {len(counts)} entries for a vocabulary of {vocab_size}")
    table = torch.empty(vocab_size, dtype=torch.long)
    totals = [0] * num_experts
    for token in sorted(range(vocab_size), key=lambda t: (-counts[t], t)):
        expert = min(range(num_experts), key=lambda e: (totals[e], e))
        table[token] = expert
        totals[expert] += counts[token]
    return table


class HashRouter(nn.Module):
    """Hash Layers: a fixed token id -> expert table, no learned parameters, gate weight 1."""

    def __init__(self, cfg: MoEConfig, table: torch.Tensor | None = None):
        super().__init__()
        self.num_experts = cfg.num_experts
        if table is None:
            table = balanced_hash_table(cfg.hash_vocab_size, cfg.num_experts)
        self.register_buffer("table", table.long())  # (V,)

    def forward(self, x: torch.Tensor, token_ids: torch.Tensor | None = None) -> Routing:
        if token_ids is None:
            raise ValueError("hash routing needs the token ids of the routed positions")
        token_ids = token_ids.reshape(-1)  # (T,)
        T = token_ids.numel()
        return Routing(torch.arange(T, device=x.device), self.table[token_ids],
                       torch.ones(T, device=x.device, dtype=x.dtype), None, None)


class ExpertChoiceRouter(nn.Module):
    """Expert choice: each expert takes its C highest-probability tokens (never overflows; some tokens may
    get no expert, reported as dropped). C = ceil(capacity_factor * T * k / E).

    Note: choosing among all tokens of the batch lets a decoder position see the router scores of later
    positions; fine for an encoder or a load study, not for causal generation.
    """

    def __init__(self, cfg: MoEConfig):
        super().__init__()
        self.num_experts, self.k, self.capacity_factor = cfg.num_experts, cfg.k, cfg.capacity_factor
        self.gate = nn.Linear(cfg.d_model, cfg.num_experts, bias=False)
        nn.init.normal_(self.gate.weight, std=0.02)

    def forward(self, x: torch.Tensor, token_ids: torch.Tensor | None = None) -> Routing:
        logits = F.linear(x.float(), self.gate.weight.float())  # (T, E)
        probs = logits.softmax(dim=-1)  # (T, E)
        T = x.shape[0]
        capacity = min(T, math.ceil(self.capacity_factor * T * self.k / self.num_experts))
        weight, token_idx = probs.t().topk(capacity, dim=-1)  # (E, C) each
        expert_idx = torch.arange(self.num_experts, device=x.device).repeat_interleave(capacity)  # (E*C,)
        return Routing(token_idx.reshape(-1), expert_idx, weight.reshape(-1), logits, probs)


def build_router(cfg: MoEConfig) -> nn.Module:
    """One router per config value."""
    return {"topk": TopKRouter, "hash": HashRouter, "expert_choice": ExpertChoiceRouter}[cfg.router](cfg)
