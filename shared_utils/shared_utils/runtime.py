"""Runtime glue every project needs: seeding, RNG snapshots, device choice, latency and memory measurement."""

from __future__ import annotations

import math
import os
import random
import resource
import sys

import numpy as np
import torch

from .errors import UserError


def quiet_optional_extensions() -> None:
    """Keep newcomers' terminals clean of two harmless library notices that a ``transformers`` import sets
    off once torchao is installed: torchao logs each optional CUDA/cutlass extension it cannot load on this
    machine, and torch logs a deprecation for every enum torchao registers. Errors still show. Each
    project's package calls this once, before anything imports transformers."""
    import logging

    for noisy in ("torchao", "torch.utils._pytree"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


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


def proc_status_mb(field: str) -> float | None:
    """A memory field of Linux's ``/proc/self/status`` (``VmHWM``, ``VmRSS``, ...) in MB; None elsewhere."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB. On Linux that is ``VmHWM``, the high-water mark
    of this program's own memory: ``getrusage``'s ru_maxrss is not, since Linux carries the parent's RSS at
    fork across exec into it, so a child spawned by a large process would report the parent's size. Elsewhere
    ru_maxrss (KiB on Linux, bytes on macOS)."""
    peak = proc_status_mb("VmHWM")
    if peak is not None:
        return peak
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / 2**20 if sys.platform == "darwin" else maxrss / 1024.0


def reset_peak_memory(device: torch.device | str) -> None:
    """Start a fresh peak-memory reading on a GPU (on the CPU the peak RSS of the process is all there is)."""
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device | str) -> dict:
    """The one peak-memory reading of a method: ``torch.cuda.max_memory_allocated`` on a GPU (what the
    tensors took), the process's peak RSS on the CPU (everything: weights, activations, the runtime)."""
    if torch.device(device).type == "cuda":
        return {"peak_memory_mb": torch.cuda.max_memory_allocated(device) / 2**20, "memory_kind": "cuda_max_allocated"}
    return {"peak_memory_mb": peak_rss_mb(), "memory_kind": "cpu_peak_rss"}


def device_info(device: torch.device | str) -> dict:
    """What a results file records about where it ran: the device and its name, threads, torch and CUDA."""
    import platform

    device = torch.device(device)
    info = {"device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}
    if device.type == "cuda":
        info.update(gpu=torch.cuda.get_device_name(device), cuda=torch.version.cuda)
    else:  # what decides int8 and bf16 speed on a CPU: the model, VNNI int8 dot products, native bf16, AMX
        cpuinfo = read_cpuinfo()
        info["cpu_model"] = cpuinfo.get("model name", "")
        info["cpu_features"] = cpu_features(cpuinfo)
    names = [info.get("cpu_model"), info["cpu"], *info.get("cpu_features", [])]
    info["label"] = (f"{info['gpu']} (CUDA {info['cuda']}, torch {info['torch']})" if device.type == "cuda" else
                     f"CPU ({', '.join(n for n in names if n)}; "
                     f"{info['threads']} threads, {info['cores']} cores, torch {info['torch']})")
    return info


def read_cpuinfo() -> dict[str, str]:
    """The first processor's fields in Linux's /proc/cpuinfo (empty elsewhere): results name the CPU they ran
    on, since one machine's timings say little about another's (an AVX2 EPYC vs an AVX-512 Xeon)."""
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    return fields


def cpu_features(cpuinfo: dict[str, str]) -> list[str]:
    """The matmul-relevant instruction sets among ``cpuinfo``'s flags."""
    wanted = {"avx512_vnni": "AVX-512 VNNI", "avx512_bf16": "AVX-512 BF16", "amx_tile": "AMX"}
    flags = cpuinfo.get("flags", "").split()
    return [name for flag, name in wanted.items() if flag in flags]


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


def out_of_time(start: float, budget_min: float, world: int, device: torch.device) -> bool:
    """Whether ``budget_min`` minutes have passed since ``start`` (0 = no budget). Under DDP every rank must stop
    at the same step, so rank 0's clock decides, broadcast to the others."""
    import time

    done = bool(budget_min) and (time.perf_counter() - start) / 60 >= budget_min
    if world > 1:
        import torch.distributed as dist

        flag = torch.tensor([float(done)], device=device)
        dist.broadcast(flag, src=0)
        done = bool(flag.item())
    return done


def check_numbers(cfg, *, positive: tuple[str, ...] = (), nonnegative: tuple[str, ...] = ()) -> None:
    """A config's numbers, checked where the config is built: every float field finite, the named fields
    > 0 or >= 0. The message names the flag, so ``--lr nan`` is one sentence, not an AdamW traceback."""
    from dataclasses import fields

    for f in fields(cfg):
        value = getattr(cfg, f.name)
        flag = f"--{f.name.replace('_', '-')}"
        if isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"{flag} must be a finite number, got {value}")
        if value is None:  # an optional number left unset: its default applies later
            continue
        if f.name in positive and not value > 0:
            raise UserError(f"{flag} must be positive, got {value}")
        if f.name in nonnegative and not value >= 0:
            raise UserError(f"{flag} must be >= 0, got {value}")


def check_training_flags(cfg) -> None:
    """The flag checks both seq2seq training configs share (batch, accumulation, steps, schedule)."""
    check_numbers(cfg, positive=("batch_tokens", "grad_accum", "steps", "eval_every", "lr"),
                  nonnegative=("warmup", "dev_limit", "time_budget_min", "label_smoothing", "clip", "weight_decay",
                               "select_size"))


def print_on_rank0(result: dict) -> None:
    """A training CLI's last line: its result as JSON, printed once (by rank 0 under torchrun)."""
    import json
    import os

    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(result))
