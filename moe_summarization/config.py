"""Typed configs for the MoE layer (and, later, the summarizer). Units and meaning in comments.

Balancing is three numbers, not a mode switch, so settings combine; :data:`BALANCERS` names the four
settings the balance experiment compares.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared_utils.errors import UserError

ROUTERS = ("topk", "hash", "expert_choice")
DISPATCHES = ("padded", "grouped")
ACTIVATIONS = ("gelu", "relu", "swiglu")


@dataclass
class MoEConfig:
    d_model: int = 256
    d_ff: int = 1024  # hidden size of each expert (the same FFN as the dense block)
    num_experts: int = 8
    router: str = "topk"  # "topk" (Switch k=1, GShard/Mixtral k=2), "hash" (Roller et al.), "expert_choice"
    k: int = 2  # experts per token (topk); hash routing always uses 1
    capacity_factor: float | None = 1.25  # slots per expert = ceil(cf * tokens * k / E); None = dropless
    jitter: float = 0.0  # multiplicative input noise on the router during training (Switch uses 0.01)
    activation: str = "gelu"  # expert FFN: "gelu"/"relu" (2 matrices + biases) or "swiglu" (3, no bias)
    aux_loss_weight: float = 0.0  # alpha of the Switch load-balancing loss (0.01 in the paper)
    z_loss_weight: float = 0.0  # weight of the ST-MoE router z-loss (1e-3 in the paper)
    bias_update_rate: float = 0.0  # aux-loss-free balancing (DeepSeek-V3): per-expert bias step size
    hash_vocab_size: int = 0  # vocabulary size the hash table covers (router="hash")
    dispatch: str = "grouped"  # "grouped": sorted segments, no padding; "padded": (E, C, D) buffer + batched matmuls

    def __post_init__(self) -> None:
        if self.router not in ROUTERS:
            raise UserError(f"router must be one of {ROUTERS}, got '{self.router}'")
        if self.dispatch not in DISPATCHES:
            raise UserError(f"dispatch must be one of {DISPATCHES}, got '{self.dispatch}'")
        if self.activation not in ACTIVATIONS:
            raise UserError(f"activation must be one of {ACTIVATIONS}, got '{self.activation}'")
        if self.num_experts < 1 or not 1 <= self.k <= self.num_experts:
            raise UserError(f"need 1 <= k <= num_experts, got k={self.k}, num_experts={self.num_experts}")
        if self.capacity_factor is not None and self.capacity_factor <= 0:
            raise UserError(f"capacity_factor must be positive or None (dropless), got {self.capacity_factor}")
        if self.router == "expert_choice" and self.capacity_factor is None:
            raise UserError("expert_choice routing needs a capacity_factor (each expert picks that many tokens)")
        if self.router == "hash" and self.hash_vocab_size <= 0:
            raise UserError("router='hash' needs hash_vocab_size > 0")
        if min(self.aux_loss_weight, self.z_loss_weight, self.bias_update_rate, self.jitter) < 0:
            raise UserError("aux_loss_weight, z_loss_weight, bias_update_rate and jitter must be >= 0")

    @property
    def experts_per_token(self) -> int:
        return 1 if self.router == "hash" else self.k


# name -> (aux_loss_weight, z_loss_weight, bias_update_rate)
BALANCERS: dict[str, tuple[float, float, float]] = {
    "none": (0.0, 0.0, 0.0),
    "switch_aux": (0.01, 0.0, 0.0),
    "z_loss": (0.0, 1e-3, 0.0),
    "own": (0.0, 0.0, 1e-2),
}


def with_balancer(cfg: MoEConfig, name: str) -> MoEConfig:
    """A copy of ``cfg`` with one of the named balancing settings."""
    if name not in BALANCERS:
        raise UserError(f"balancer must be one of {tuple(BALANCERS)}, got '{name}'")
    aux, z, rate = BALANCERS[name]
    return MoEConfig(**{**cfg.__dict__, "aux_loss_weight": aux, "z_loss_weight": z, "bias_update_rate": rate})
