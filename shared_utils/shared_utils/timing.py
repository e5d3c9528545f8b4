"""Speed comparisons that survive noise: ``torch.utils.benchmark`` timers, the candidates interleaved round by
round, median and interquartile range.

A machine's speed drifts (other load, frequency scaling, caches), so timing A, then B, compares A's moment with
B's. :func:`interleaved` times every candidate once per round, in a fresh shuffled order each round, for
``repeats`` rounds; each time is the median of a ``Timer.blocked_autorange`` block (which synchronises CUDA), or
one call where a call alone fills a block (:func:`time_once`).
:func:`ratio` pairs the candidates' times round by round, so a drift common to both cancels, and calls one
faster only when the 95% bootstrap interval of the median per-round ratio excludes 1.0 (an interquartile range
is a 50% interval: with ~7 rounds it clears 1.0 by chance far too often). With 7 rounds that asks at least 6
of them to agree; more rounds narrow it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.benchmark import Timer
from torch.utils.benchmark.utils.timer import timer as clock  # the Timer's own clock: synchronises CUDA

from .errors import UserError


@dataclass(frozen=True)
class Timing:
    """Per-round times of one candidate, in ms."""

    samples_ms: tuple[float, ...]

    @property
    def median_ms(self) -> float:
        return float(np.median(self.samples_ms))

    def as_dict(self) -> dict:
        """``median_ms``, ``iqr_ms`` ([25th, 75th] percentile) and ``repeats``, as the results files hold them."""
        q25, q75 = np.percentile(self.samples_ms, [25, 75])
        return {"median_ms": self.median_ms, "iqr_ms": [float(q25), float(q75)], "repeats": len(self.samples_ms),
                "samples_ms": list(self.samples_ms)}


def time_once(fn: Callable[[], object], *, min_run_time: float = 0.2) -> float:
    """Median ms per call of ``fn`` over one block, with all of torch's threads. A call that alone lasts
    ``min_run_time`` or more is its own block: ``blocked_autorange`` would run it twice, the first time only to
    find that one call fills a block, which costs a whole extra call of a slow model (a third of GPT-2 Large's
    timing). Shorter calls get a ``blocked_autorange`` block."""
    start = clock()
    fn()
    first = clock() - start
    if first >= min_run_time:
        return first * 1e3
    timer = Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=min_run_time).median * 1e3


def interleaved(candidates: dict[str, Callable[[], object]], *, repeats: int = 5, min_run_time: float = 0.2,
                warmup: int = 1, seed: int = 0) -> dict[str, Timing]:
    """Time every candidate once per round, rounds in a shuffled order, after ``warmup`` untimed calls each."""
    if repeats < 1:
        raise UserError(f"--repeats must be >= 1, got {repeats}")
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    order, rng = list(candidates), random.Random(seed)
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        rng.shuffle(order)
        for name in order:
            samples[name].append(time_once(candidates[name], min_run_time=min_run_time))
    return {name: Timing(tuple(times)) for name, times in samples.items()}


TIMING_RESAMPLES = 2000


def median_interval(per_round, *, resamples: int = TIMING_RESAMPLES, seed: int = 0) -> list[float]:
    """The 95% percentile-bootstrap interval of the median of ``per_round`` (rounds drawn with replacement)."""
    values = np.asarray(per_round, dtype=float)
    draws = np.random.default_rng(seed).integers(0, len(values), size=(resamples, len(values)))
    medians = np.median(values[draws], axis=1)
    return [float(np.percentile(medians, 2.5)), float(np.percentile(medians, 97.5))]


def ratio_verdict(ci95) -> str:
    """``lower`` / ``higher`` only when the whole 95% interval of the median ratio is below / above 1.0."""
    return "lower" if ci95[1] < 1.0 else "higher" if ci95[0] > 1.0 else "tie"


def ratio(num: Timing, den: Timing) -> dict:
    """``num / den`` per round: ``median``, ``iqr`` ([25th, 75th] percentile), ``repeats``, the ratios
    themselves (``per_round``), ``ci95`` (:func:`median_interval`) and ``verdict`` (:func:`ratio_verdict`)."""
    if len(num.samples_ms) != len(den.samples_ms):
        raise UserError("a paired ratio needs timings of the same rounds")
    per_round = np.asarray(num.samples_ms) / np.asarray(den.samples_ms)
    ci = median_interval(per_round)
    return {**spread(per_round), "per_round": [float(r) for r in per_round], "ci95": ci,
            "verdict": ratio_verdict(ci)}


def spread(per_round) -> dict:
    """``median``, ``iqr`` ([25th, 75th] percentile) and ``repeats`` of a quantity computed round by round from
    interleaved timings (a ratio, a difference, a share), so that a drift common to its terms cancels."""
    values = np.asarray(per_round, dtype=float)
    q25, q75 = np.percentile(values, [25, 75])
    return {"median": float(np.median(values)), "iqr": [float(q25), float(q75)], "repeats": len(values)}


# Operator families for :func:`time_by_op_family`, by aten name (the profiler's key is "aten::<name>").
OP_FAMILIES: dict[str, tuple[str, ...]] = {
    "matmul": ("mm", "addmm", "bmm", "baddbmm", "_int_mm", "_grouped_mm"),
    "attention": ("_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_flash_attention",
                  "_scaled_dot_product_efficient_attention", "_scaled_dot_product_cudnn_attention"),
    "softmax and search": ("_log_softmax", "_softmax", "logsumexp", "topk", "argmax", "max", "sort", "where",
                           "isin", "multinomial"),
    "copies and indexing": ("cat", "copy_", "index_select", "index", "index_put_", "_index_put_impl_", "clone",
                            "gather", "scatter_add_", "index_add_", "fill_", "zero_"),
}


def time_by_op_family(fn: Callable[[], object], *, runs: int = 3) -> dict:
    """Where one call of ``fn`` spends its time: the operators' own (self) time per call, summed by family of
    :data:`OP_FAMILIES`, the remaining operators (element-wise ops, norms, ...) in ``other``, and the wall time
    outside any operator (Python between the kernels: loops, bookkeeping, dispatch) in ``outside operators``.
    ``torch.profiler`` on the host, after one warm-up call; its own overhead inflates the total a little, so the
    shares explain a timing, they do not replace it. On CUDA the device time of each operator is used instead.

    Returns {family: {"ms": per call, "share": of the total}} and "total_ms" (wall time per call, profiled).
    """
    import time

    from torch.profiler import ProfilerActivity, profile

    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    fn()
    with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])) as prof:
        start = time.perf_counter()
        for _ in range(runs):
            fn()
        if cuda:
            torch.cuda.synchronize()
        wall_ms = (time.perf_counter() - start) * 1e3 / runs
    family_of = {f"aten::{op}": family for family, ops in OP_FAMILIES.items() for op in ops}
    totals = dict.fromkeys([*OP_FAMILIES, "other"], 0.0)
    for event in prof.key_averages():
        us = event.self_device_time_total if cuda else event.self_cpu_time_total
        totals[family_of.get(event.key, "other")] += us / 1e3 / runs
    totals["outside operators"] = max(0.0, wall_ms - sum(totals.values()))
    total = sum(totals.values())
    shares = {name: {"ms": ms, "share": ms / total if total else 0.0} for name, ms in totals.items()}
    return {"total_ms": total, **shares}
