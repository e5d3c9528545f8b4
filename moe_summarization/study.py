"""What the summarization study's command and ``rederive_verdicts.py`` share: the models it compares and the
protocol's comparisons between them, computed from the per-document scores its run records keep."""

from __future__ import annotations

import numpy as np

from shared_utils.stats import bootstrap_items, comparison

# model name -> (variant, arch): ours in its four variants, then the architecture peers
MODELS = {"moe_top2": ("moe_top2", "ours"), "dense": ("dense", "ours"), "moe_top1": ("moe_top1", "ours"),
          "moe_hash": ("moe_hash", "ours"), "bart": ("dense", "bart"), "t5": ("dense", "t5"),
          "llama": ("dense", "llama")}
OURS = ("moe_top2", "dense", "moe_top1", "moe_hash")
PEERS = ("bart", "t5", "llama")
COMPARED = ("rougeL", "bertscore_f1")  # the metrics every comparison is made on


def compare(a: str, items_a: list[dict], b: str, items_b: list[dict], metric: str, seeds: dict) -> dict:
    """The protocol's comparison of two systems on one metric: ``items_*`` hold each seed's per-document scores
    (metric -> list), in the same document order. lead-1 is deterministic: it has no seed variance (``b_fixed``)."""
    per_a = [float(np.mean(run[metric])) for run in items_a]
    per_b = [float(np.mean(run[metric])) for run in items_b]
    samples = bootstrap_items([run[metric] for run in items_a], [run[metric] for run in items_b])
    return {**comparison(a, per_a, b, per_b, samples, seeds, b_fixed=b == "lead1"),
            "ci95_kind": "two-level: seeds, then items"}


def comparisons(records: dict[str, dict], lead_items: dict, best: str | None, sets: list[str]) -> dict:
    """Every comparison the protocol asks for, between the models with finished runs: the best of ours against
    lead-1 and against each peer, each MoE variant against dense (and dense against lead-1)."""
    by_model: dict[str, list[dict]] = {}
    for r in records.values():
        by_model.setdefault(r["model"], []).append(r)
    pairs = [(v, "dense") for v in ("moe_top2", "moe_top1", "moe_hash")] + [("dense", "lead1")]
    if best is not None and best != "dense":
        pairs.append((best, "lead1"))
    if best is not None:
        pairs += [(best, peer) for peer in PEERS]
    out = {}
    for a, b in pairs:
        if a not in by_model or (b != "lead1" and b not in by_model):
            continue
        runs_b = by_model.get(b, [None])
        out[f"{a}_vs_{b}"] = {s: {m: compare(
            a, [r["items"][s] for r in by_model[a]], b,
            [lead_items[s] if r is None else r["items"][s] for r in runs_b], m,
            {a: [r["seed"] for r in by_model[a]], b: [r["seed"] for r in by_model.get(b, [])]})
            for m in COMPARED} for s in sets}
    return out
