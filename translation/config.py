"""Typed configs for the translation model and its training run, with named presets.

Units in comments. Flags override fields; the resolved config is written into the run folder and into every
checkpoint, so ``eval.py`` rebuilds the model from the checkpoint alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from shared_utils.data import selection_size_field
from shared_utils.errors import UserError
from shared_utils.runtime import check_training_flags

POSITIONALS = ("sinusoidal", "rope", "relative_bias")
ARCHS = ("ours", "marian")
FFNS = ("gelu", "swiglu")
NORMS = ("layernorm", "rmsnorm")


@dataclass
class ModelConfig:
    arch: str = field(default="ours", metadata={"choices": ARCHS, "help": (
        "ours: model.py's Transformer; marian: the Hugging Face MarianMTModel peer at the same sizes, trained and "
        "decoded by the same code")})
    vocab_size: int = 16000  # shared Finnish+English subword vocabulary
    d_model: int = 256
    num_heads: int = 4
    encoder_layers: int = 3
    decoder_layers: int = 3
    d_ff: int = 1024
    dropout: float = 0.1  # on embeddings and on every residual branch
    attention_dropout: float = 0.0  # on attention weights (Marian's and fairseq's default: none)
    activation_dropout: float = 0.0  # inside the FFN (likewise none by default)
    positional: str = field(default="rope", metadata={"choices": POSITIONALS, "help": (
        "position scheme of our model (the Marian peer has its own sinusoidal one)")})
    max_len: int = 256  # tokens per sentence (longer ones are truncated)
    embed_init_std: float = 0.0  # init std of the shared embedding; 0 = d_model ** -0.5 (x sqrt(D): unit variance)
    fused_attention: bool = True  # SDPA; False = the explicit reference computation
    relative_buckets: int = 32
    relative_max_distance: int = 128
    # architecture ablations (issue #20), each at the same parameter count within ~1%:
    ffn: str = field(default="gelu", metadata={"choices": FFNS, "help": (
        "gelu: 2 matrices of d_ff; swiglu: 3 of 2/3 d_ff, gated (Shazeer 2020; LLaMA)")})
    norm: str = field(default="layernorm", metadata={"choices": NORMS, "help": (
        "rmsnorm: no mean subtraction, no bias (Zhang & Sennrich 2019)")})
    bias: bool = True  # biases in every linear layer and LayerNorm; False as in T5 and PaLM

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise UserError(f"--arch must be one of {', '.join(ARCHS)}, got '{self.arch}'")
        if self.positional not in POSITIONALS:
            raise UserError(f"--positional must be one of {', '.join(POSITIONALS)}, got '{self.positional}'")
        if self.ffn not in FFNS or self.norm not in NORMS:
            raise UserError(f"--ffn must be one of {', '.join(FFNS)} and --norm one of {', '.join(NORMS)}, "
                            f"got '{self.ffn}', '{self.norm}'")
        if self.arch == "marian" and (self.ffn, self.norm, self.bias) != ("gelu", "layernorm", True):
            raise UserError("--ffn, --norm and --no-bias change our architecture; the Marian peer keeps its own "
                            "(drop them, or pass --arch ours)")
        if self.d_model % self.num_heads:
            raise UserError(f"d_model {self.d_model} must be divisible by num_heads {self.num_heads}")
        if self.positional == "rope" and (self.d_model // self.num_heads) % 2:
            raise UserError("rope needs an even head dimension (d_model / num_heads)")
        if self.embed_init_std < 0:
            raise UserError(f"embed_init_std must be >= 0 (0 = d_model ** -0.5), got {self.embed_init_std}")
        for name in ("dropout", "attention_dropout", "activation_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise UserError(f"{name} must be in [0, 1), got {getattr(self, name)}")


@dataclass
class TrainConfig:
    train: str = field(default="hf:Helsinki-NLP/opus-100:en-fi:train", metadata={
        "path": "data", "help": "TSV finnish<TAB>english, or hf:name[:config[:split]]"})
    dev: list[str] = field(default_factory=lambda: ["hf:Helsinki-NLP/opus-100:en-fi:validation"], metadata={
        "path": "data", "help": "one or more dev sets, reported, never selected on (TSV or hf:...)"})
    batch_tokens: int = 3000  # source+target tokens per optimizer step, padding included
    grad_accum: int = 1  # the batch is split into this many micro-batches
    steps: int = 2000  # optimizer steps
    lr: float = 7e-4  # peak learning rate
    warmup: int = 400  # steps of linear warmup, then inverse-square-root decay
    label_smoothing: float = 0.1
    weight_decay: float = 0.0
    clip: float = 1.0
    eval_every: int = 250  # steps between validation (loss + greedy BLEU/chrF++) and checkpoints
    dev_limit: int = 500  # sentences per dev set scored during training, for the curves only (0 = all)
    select_size: int | None = selection_size_field("pairs")
    select_seed: int = 0  # the split's seed: fixed apart from --seed, so every run trains on the same pairs
    time_budget_min: float = 0.0  # stop cleanly at a checkpoint after this many minutes (0 = none)
    seed: int = 0
    keep_checkpoints: int = 2  # newest checkpoints kept besides the best (the recipe sweep keeps 5, to average)

    def __post_init__(self) -> None:
        check_training_flags(self)
        if self.keep_checkpoints < 1:
            raise UserError(f"--keep-checkpoints must be >= 1, got {self.keep_checkpoints}")


PRESETS: dict[str, dict] = {
    "tiny": dict(vocab_size=1000, d_model=64, num_heads=2, encoder_layers=1, decoder_layers=1, d_ff=128,
                 max_len=64),
    "small": dict(vocab_size=16000, d_model=256, num_heads=4, encoder_layers=3, decoder_layers=3, d_ff=1024),
    "base": dict(vocab_size=32000, d_model=512, num_heads=8, encoder_layers=6, decoder_layers=6, d_ff=2048),
}


# what the training benchmark changes from TrainConfig (bench_training.py): validation less often, on fewer dev
# sentences (the curves only; the checkpoint is chosen on the whole selection split)
BENCH_TRAIN = dict(eval_every=400, dev_limit=200)

# issue #20: the grids bench_recipe.py tries on the selection split; bench_training.py then trains under the recipe
# chosen there and adds RoPE with the ablations kept there (results/recipe.json, results/ablations.json)
RECIPES: dict[str, dict] = {  # name -> TrainConfig fields over BENCH_TRAIN; the same for ours and the peer
    "base": {},  # lr 7e-4, warmup 400, inverse square root, label smoothing 0.1
    "lr1e-3_warmup800": dict(lr=1e-3, warmup=800),  # the peer's own schedule (issue #20)
    "lr5e-4": dict(lr=5e-4),
    "smoothing0.2": dict(label_smoothing=0.2),
    "base_average3": dict(average_last=3),  # base's runs, scored as the mean of their last 3 checkpoints
    "lr1e-3_warmup800_average3": dict(lr=1e-3, warmup=800, average_last=3),  # likewise, the peer's schedule
}
ABLATIONS: dict[str, dict] = {  # name -> ModelConfig fields over the RoPE model; "baseline" changes nothing
    "baseline": {},
    "swiglu": dict(ffn="swiglu"),
    "rmsnorm": dict(norm="rmsnorm"),
    "no_bias": dict(bias=False),
    "deep_encoder_6_1": dict(encoder_layers=6, decoder_layers=1),  # also fewer decoder steps' work per token
}


def recipe_fields(name: str) -> tuple[dict, int]:
    """A recipe's TrainConfig fields over BENCH_TRAIN (an averaging recipe trains as its base) and how many of the
    last checkpoints it averages (1: none)."""
    fields = dict(RECIPES[name])
    return fields, fields.pop("average_last", 1)


def model_config(preset: str, **overrides) -> ModelConfig:
    if preset not in PRESETS:
        raise UserError(f"--preset must be one of {', '.join(PRESETS)}, got '{preset}'")
    known = {f.name for f in fields(ModelConfig)}
    return ModelConfig(**{**PRESETS[preset], **{k: v for k, v in overrides.items() if k in known and v is not None}})
