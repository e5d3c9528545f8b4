"""Typed configs for the MoE layer and the summarizer built on it. Units and meaning in comments.

Balancing is three numbers, not a mode switch, so settings combine; :data:`BALANCERS` names the four
settings the balance experiment compares.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from shared_utils.data import selection_size_field
from shared_utils.errors import UserError
from shared_utils.runtime import check_training_flags

ROUTERS = ("topk", "hash", "expert_choice")
DISPATCHES = ("padded", "grouped")
ACTIVATIONS = ("gelu", "relu", "swiglu")
SCHEDULES = ("cosine", "inverse_sqrt")
# "ours": the summarizer of model.py (dense or MoE); the others are architecture peers (peers.py), dense,
# randomly initialised, with the FFN width that matches our dense model's parameter count
ARCHS = ("ours", "bart", "t5", "llama")


@dataclass
class MoEConfig:
    d_model: int = 256
    d_ff: int = 1024  # hidden size of each expert (the same FFN as the dense block)
    num_experts: int = 8
    router: str = "topk"  # "topk" (Switch k=1, GShard/Mixtral k=2), "hash" (Roller et al.), "expert_choice"
    k: int = 2  # experts per token (topk); hash routing always uses 1
    capacity_factor: float | None = 1.25  # slots per expert = ceil(cf * tokens * k / E); None = dropless
    eval_capacity_factor: float | None = None  # the same in eval mode; None = dropless, so at inference a
    # token's output never depends on the other tokens of its batch (beam search, batch size)
    jitter: float = 0.0  # multiplicative input noise on the router during training (Switch uses 0.01)
    activation: str = "gelu"  # expert FFN: "gelu"/"relu" (2 matrices) or "swiglu" (3, as Mixtral)
    bias: bool = True  # gelu/relu experts with biases, as the dense nn.Linear FFN; False as T5/Switch
    # (swiglu experts never have biases)
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
        for name in ("capacity_factor", "eval_capacity_factor"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise UserError(f"{name} must be positive or None (dropless), got {getattr(self, name)}")
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


def balancer_fields(name: str) -> dict[str, float]:
    """The three balancing fields of one of the named settings."""
    if name not in BALANCERS:
        raise UserError(f"balancer must be one of {tuple(BALANCERS)}, got '{name}'")
    return dict(zip(("aux_loss_weight", "z_loss_weight", "bias_update_rate"), BALANCERS[name]))


def with_balancer(cfg: MoEConfig, name: str) -> MoEConfig:
    """A copy of ``cfg`` with one of the named balancing settings."""
    return replace(cfg, **balancer_fields(name))


# the layer the speed benchmarks time (bench_moe.py's headline, bench_expert_parallel.py): Switch-base's width,
# top-1, bias-free experts as in T5/Switch, and the layer's own 8 experts at capacity factor 1.25; bench_moe varies
# k, capacity and activation
SPEED_LAYER = MoEConfig(d_model=512, d_ff=2048, k=1, bias=False)
# the layers of the balance experiment's tiny language model (balance.py): Switch-style top-1, 8 experts, cf 1.25
BALANCE_LAYER = MoEConfig(d_model=128, d_ff=256, k=1)


# -- the summarizer ------------------------------------------------------------------------------------------

# variant -> the MoE layer it puts in every moe_every-th FFN (None: dense), resolved once by summarizer_config.
# d_model, d_ff and hash_vocab_size are the summarizer's own, filled there: experts of d_ff / k, so every variant
# has the dense model's active FFN parameters (top-2 runs two experts of d_ff / 2; a test counts them). Every
# variant is dropless while training too (capacity_factor None, where the layer's own default is Switch's 1.25):
# the grouped dispatch needs no fixed buffer, and a dropped token loses that layer's FFN (3-8% of the encoder's
# tokens at cf 1.25 in our runs, with the expert load still at 1.4-1.7x the mean).
VARIANTS: dict[str, MoEConfig | None] = {
    "dense": None,
    "moe_top2": MoEConfig(router="topk", k=2, capacity_factor=None, **balancer_fields("own")),
    "moe_top1": MoEConfig(router="topk", k=1, capacity_factor=None, **balancer_fields("own")),
    # a fixed hash table has nothing to balance; its table covers the model's vocabulary (filled per model)
    "moe_hash": MoEConfig(router="hash", k=1, capacity_factor=None, hash_vocab_size=1),
}


@dataclass
class SummarizerConfig:
    """Encoder-decoder summarizer; every ``moe_every``-th FFN is the MoE layer ``moe`` describes (None: dense).

    ``moe`` is the whole layer config, so every routing, capacity and balancing setting is one flag
    (``--moe-k``, ``--moe-capacity-factor``, ...). Its ``d_model`` and ``hash_vocab_size`` are the summarizer's
    own ``d_model`` and ``vocab_size``: :func:`summarizer_config` fills them, and a mismatch is an error.
    """

    vocab_size: int = 8000  # subword vocabulary shared by documents and summaries
    d_model: int = 256
    num_heads: int = 4
    encoder_layers: int = 3
    decoder_layers: int = 3
    d_ff: int = 1024  # dense FFN hidden size (an MoE variant's experts get d_ff / k)
    dropout: float = 0.1
    moe_every: int = 2  # layers 2, 4, ... (1-based) of each stack get an MoE FFN
    max_source_len: int = 256  # document tokens kept (longer documents are truncated, and counted)
    max_target_len: int = 48  # summary tokens kept, and the decoding limit
    copy: bool = True  # pointer-generator output layer: copy document tokens as well as generate them
    lowercase: bool = False  # the tokenizer lowercases: pays where summaries differ in case from documents
    # (ALL-CAPS headlines); ROUGE and the offline MiniLM BERTScore ignore case anyway
    moe: MoEConfig | None = None  # the sparse FFN; None = the dense model
    variant: str = "dense"  # the VARIANTS preset ``moe`` was made from; "custom" where flags changed its router or k
    arch: str = field(default="ours", metadata={"choices": ARCHS, "help": "ours, or an architecture peer with "
                      "its FFN width matched to our dense model's parameters (llama: decoder-only)"})

    def __post_init__(self) -> None:
        if isinstance(self.moe, dict):  # read back from a checkpoint's config.json
            self.moe = MoEConfig(**self.moe)
        if self.arch not in ARCHS:
            raise UserError(f"--arch must be one of {', '.join(ARCHS)}, got '{self.arch}'")
        if self.arch != "ours" and (self.moe is not None or self.copy):
            raise UserError(f"--arch {self.arch} is a dense peer without a copy head: use --variant dense --no-copy")
        if self.d_model % self.num_heads:
            raise UserError(f"d_model {self.d_model} must be divisible by num_heads {self.num_heads}")
        if self.moe_every < 1 or self.d_ff % 2:
            raise UserError("moe_every must be >= 1 and d_ff even")
        if min(self.max_source_len, self.max_target_len) < 4:
            raise UserError("max_source_len and max_target_len must be at least 4 tokens")
        if self.moe is not None and self.moe.d_model != self.d_model:
            raise UserError(f"the MoE layer's d_model {self.moe.d_model} differs from the model's {self.d_model}")
        if (self.moe is None) != (VARIANTS.get(self.variant, self.moe) is None):
            raise UserError(f"variant '{self.variant}' does not describe this model (MoE layer: "
                            f"{'none' if self.moe is None else self.moe.router}); build it with summarizer_config")

    @property
    def label(self) -> str:
        """The model's name in logs and reports: the peer's architecture, else the variant."""
        return self.variant if self.arch == "ours" else self.arch

    def is_moe_layer(self, index: int) -> bool:
        """0-based layer index -> whether its FFN is sparse."""
        return self.moe is not None and (index + 1) % self.moe_every == 0

    def with_vocab_size(self, vocab_size: int) -> SummarizerConfig:
        """The same config for the vocabulary the tokenizer reached (the hash table covers all of it)."""
        moe = self.moe and replace(self.moe, hash_vocab_size=vocab_size if self.moe.router == "hash" else 0)
        return replace(self, vocab_size=vocab_size, moe=moe)


@dataclass
class SumTrainConfig:
    train: str = field(default="hf:EdinburghNLP/xsum::train", metadata={
        "path": "data", "help": "JSONL {document, summary}, or hf:name[:config[:split]]"})
    dev: str = field(default="hf:EdinburghNLP/xsum::validation", metadata={
        "path": "data", "help": "reported, never selected on (JSONL or hf:...)"})
    batch_tokens: int = 4000  # document+summary tokens per optimizer step, padding included
    grad_accum: int = 1
    steps: int = 1000
    lr: float = 1e-3
    warmup: int = 200  # linear warmup, then the schedule's decay
    schedule: str = "cosine"  # "cosine": down to ~0 at --steps (a --time-budget-min stop comes before the end);
    # "inverse_sqrt": Vaswani et al., never annealed
    label_smoothing: float = 0.1
    clip: float = 1.0
    eval_every: int = 250  # validation (loss + ROUGE on dev_limit documents) and checkpoints
    dev_limit: int = 200  # dev documents scored during training, for the curves only (0 = all)
    select_size: int | None = selection_size_field("documents")
    select_seed: int = 0  # the split's seed: fixed apart from --seed, so every run trains on the same documents
    time_budget_min: float = 0.0  # stop cleanly at a checkpoint after this many minutes (0 = none)
    seed: int = 0
    expert_parallel: int = 1  # ranks the experts are sharded over (torchrun processes; 1 = DDP, replicated)

    def __post_init__(self) -> None:
        check_training_flags(self)
        if self.expert_parallel < 1:
            raise UserError(f"--expert-parallel must be >= 1, got {self.expert_parallel}")
        if self.schedule not in SCHEDULES:
            raise UserError(f"--schedule must be one of {', '.join(SCHEDULES)}, got '{self.schedule}'")


SIZES: dict[str, dict] = {
    "tiny": dict(vocab_size=600, d_model=32, num_heads=2, encoder_layers=2, decoder_layers=2, d_ff=64,
                 max_source_len=64, max_target_len=16, moe=dict(num_experts=4)),
    "mini": dict(vocab_size=4000, d_model=128, num_heads=4, encoder_layers=2, decoder_layers=2, d_ff=512,
                 max_source_len=64, max_target_len=32),
    "small": dict(vocab_size=4000, d_model=256, num_heads=4, encoder_layers=2, decoder_layers=2, d_ff=1024,
                  max_source_len=192, max_target_len=40),
    "base": dict(vocab_size=32000, d_model=512, num_heads=8, encoder_layers=6, decoder_layers=6, d_ff=2048,
                 max_source_len=512, max_target_len=64),
}


def summarizer_config(size: str, variant: str, *, balancer: str | None = None, moe: dict | None = None,
                      **overrides) -> SummarizerConfig:
    """The config of one size preset and one variant preset; ``overrides`` (summarizer fields) and ``moe``
    (MoE layer fields, e.g. ``k`` or ``capacity_factor``) replace preset values; ``balancer`` names one of
    :data:`BALANCERS` instead of the variant's."""
    if size not in SIZES:
        raise UserError(f"--size must be one of {', '.join(SIZES)}, got '{size}'")
    if variant not in VARIANTS:
        raise UserError(f"--variant must be one of {', '.join(VARIANTS)}, got '{variant}'")
    fields = {**SIZES[size], **overrides}
    size_moe = fields.pop("moe", {})
    preset = VARIANTS[variant]
    if preset is None:
        if moe or balancer:
            raise UserError("--moe-* and --balancer flags need an MoE --variant; 'dense' has no MoE layer")
        if fields.get("arch", "ours") != "ours":
            return peer_config(SummarizerConfig(**{**fields, "arch": "ours"}), fields["arch"])
        return SummarizerConfig(**fields)
    if fields.get("arch", "ours") != "ours":
        raise UserError(f"--arch {fields['arch']} is a dense peer: it takes --variant dense, not '{variant}'")
    layer = {**size_moe, **(balancer_fields(balancer) if balancer else {}), **(moe or {})}
    defaults = SummarizerConfig()
    vocab = fields.get("vocab_size", defaults.vocab_size)
    k = layer.get("k", preset.k)
    layer.update(d_model=fields.get("d_model", defaults.d_model), d_ff=fields.get("d_ff", defaults.d_ff) // k,
                 hash_vocab_size=vocab if layer.get("router", preset.router) == "hash" else 0)
    layer = replace(preset, **layer)
    same = (layer.router, layer.k) == (preset.router, preset.k)
    return SummarizerConfig(**fields, variant=variant if same else "custom", moe=layer)


def peer_config(dense: SummarizerConfig, arch: str) -> SummarizerConfig:
    """Peer ``arch`` at the sizes of our ``dense`` model, its FFN width solved to match ``dense``'s parameters."""
    from .model import build_model
    from .peers import PARAM_TOLERANCE, matched_ffn, parameter_count

    target = parameter_count(build_model, dense)
    peer = replace(dense, arch=arch, copy=False)
    peer = replace(peer, d_ff=matched_ffn(peer, target))
    count = parameter_count(build_model, peer)
    if abs(count / target - 1) > PARAM_TOLERANCE:
        raise UserError(f"--arch {arch} cannot match our dense model's {target:,} parameters within "
                        f"{PARAM_TOLERANCE:.0%} at these sizes (its FFN width {peer.d_ff} gives {count:,}): "
                        "raise --d-model or --d-ff, or lower --max-source-len")
    return peer


# what each data source's benchmark trains (bench_summarization.py, ``make moe-xsum``): a size preset plus the
# settings that differ from the configs' defaults.
# - local: the xsum-style pairs (intro sentence <- rest of the article), documents kept to 384 tokens; size and
#   steps chosen on the selection split (README: "How the local preset was chosen");
# - headlines: the headline mix of ../shared/data/summarization (documents cut to 64 tokens; its Reuters
#   headlines are ALL CAPS over mixed-case articles, hence the lowercasing tokenizer);
# - hub: XSum itself, at the base size, on a GPU.
BENCH_PRESETS: dict[str, dict] = {
    "local": dict(size="mini", vocab_size=8000, steps=2400, lr=2e-3, warmup=200, max_source_len=384,
                  max_target_len=48, select_size=300, dev_limit=100, eval_every=600),
    "headlines": dict(size="mini", steps=3000, lr=2e-3, warmup=100, max_source_len=64, lowercase=True),
    "hub": dict(size="base", steps=20000, lr=2e-3, warmup=100, max_source_len=512, lowercase=False),
}
