"""Runtime glue every project needs: seeding, RNG snapshots, device choice, latency and memory measurement."""

from __future__ import annotations

import math
import os
import random
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .errors import UserError


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Every RNG state a training loop touches, for exact resume."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` captured."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def pick_device(preference: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else CPU; ``cuda`` without a GPU is a clear error."""
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if preference.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda was requested but no CUDA GPU is visible; use --device cpu")
    try:
        return torch.device(preference)
    except RuntimeError as exc:
        raise UserError(f"--device: unknown device '{preference}'") from exc


@dataclass(frozen=True)
class Latency:
    """Wall-clock latency of repeated calls, in milliseconds (warm-up calls excluded)."""

    p50_ms: float
    p90_ms: float
    mean_ms: float
    iters: int


def measure_latency(fn: Callable[[], object], *, warmup: int = 3, iters: int = 20,
                    device: torch.device | str = "cpu") -> Latency:
    """Time ``fn()`` ``iters`` times after ``warmup`` untimed calls; synchronises CUDA around each call."""
    cuda = torch.device(device).type == "cuda"
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1e3)
    times.sort()
    p90 = times[min(len(times) - 1, int(round(0.9 * (len(times) - 1))))]
    return Latency(statistics.median(times), p90, statistics.fmean(times), iters)


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mb() -> float:
    """Current resident set size in MB, from /proc (0.0 where /proc is unavailable)."""
    try:
        with open(f"/proc/{os.getpid()}/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return 0.0


def cuda_peak_mb() -> float:
    """Peak CUDA memory allocated by torch in MB, 0.0 without a GPU."""
    return torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else 0.0


@dataclass(frozen=True)
class ModuleBytes:
    """Bytes actually held by a module's tensors (element size x count, as stored)."""

    parameters: int
    buffers: int

    @property
    def total(self) -> int:
        return self.parameters + self.buffers


def module_bytes(module: torch.nn.Module) -> ModuleBytes:
    """Count the bytes of every distinct parameter and buffer (tied tensors once)."""

    def count(tensors) -> int:
        seen, total = set(), 0
        for t in tensors:
            key = (t.data_ptr(), t.numel(), t.dtype)
            if key not in seen:
                seen.add(key)
                total += t.numel() * t.element_size()
        return total

    return ModuleBytes(count(module.parameters()), count(module.buffers()))


def setup_distributed(device_pref: str = "auto") -> tuple[int, int, torch.device]:
    """(rank, world size, device); under ``torchrun``, joins the process group (nccl on GPU, gloo on CPU)."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, pick_device(device_pref)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device_pref != "cpu"
    dist.init_process_group("nccl" if use_cuda else "gloo")
    device = torch.device(f"cuda:{local}") if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    return rank, world, device


def inverse_sqrt_lr(step: int, peak: float, warmup: int) -> float:
    """Linear warmup to ``peak`` over ``warmup`` steps, then peak * sqrt(warmup / step) (Vaswani et al. 2017)."""
    s, warm = step + 1, max(1, warmup)
    return peak * min(s / warm, math.sqrt(warm / s))


def cosine_lr(step: int, peak: float, warmup: int, total: int) -> float:
    """Linear warmup to ``peak``, then half a cosine down towards 0 at step ``total`` (Loshchilov & Hutter 2017).

    For a step budget fixed in advance: the last updates are small, so the weights that get evaluated have
    settled, where the inverse-square-root schedule still takes large steps at the end (in the summarizer
    benchmark two dense seeds differed by 1.42 ROUGE-L under it, 0.30 under this one)."""
    s, warm = step + 1, max(1, warmup)
    if s <= warm:
        return peak * s / warm
    return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, (s - warm) / max(1, total - warm + 1))))


def check_numbers(cfg, *, positive: tuple[str, ...] = (), nonnegative: tuple[str, ...] = ()) -> None:
    """A config's numbers, checked where the config is built: every float field finite, the named fields
    > 0 or >= 0. The message names the flag, so ``--lr nan`` is one sentence, not an AdamW traceback."""
    from dataclasses import fields

    for f in fields(cfg):
        value = getattr(cfg, f.name)
        flag = f"--{f.name.replace('_', '-')}"
        if isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"{flag} must be a finite number, got {value}")
        if f.name in positive and not value > 0:
            raise UserError(f"{flag} must be positive, got {value}")
        if f.name in nonnegative and not value >= 0:
            raise UserError(f"{flag} must be >= 0, got {value}")


def check_training_flags(cfg) -> None:
    """The flag checks both seq2seq training configs share (batch, accumulation, steps, schedule)."""
    check_numbers(cfg, positive=("batch_tokens", "grad_accum", "steps", "eval_every", "lr"),
                  nonnegative=("warmup", "dev_limit", "time_budget_min", "label_smoothing", "clip", "weight_decay",
                               "select_size"))
