"""The decoding study: what each strategy costs and buys, for the best checkpoint of the training benchmark.

    python translation/bench_decoding.py                        # after bench_training.py; ~40 min on 2 CPU cores
    python translation/bench_decoding.py --checkpoint runs/mt-rope --limit 200 --out /tmp/dec   # any checkpoint
    python translation/bench_decoding.py --speed-only           # the side-by-side timing alone, no checkpoint (min)

For greedy, beam 2/4/8, top-k (k = 10, 50; T = 0.7, 1.0) and top-p 0.9: BLEU / chrF++ and batched latency on
the selection split the checkpoint was chosen on and on both dev sets, and the diversity of sampled outputs
(distinct-1/2 over 5 samples per sentence). The best deterministic strategy is chosen on the selection split;
beam 4 against greedy gets sacrebleu's paired bootstrap interval on each dev set. Then, side by side in one
process (``torch.utils.benchmark``, interleaved rounds, median and IQR): greedy with and without the KV cache
(64 new tokens), and our greedy and beam search (beam 4) against Hugging Face ``generate()`` on a
``MarianMTModel`` of identical size at batch 32, both forced to the same output length, so both do the same
work whatever their weights. Writes results/decoding.{json,md} and decoding_*.png.

``--speed-only`` runs just that side-by-side timing, on an untrained model of ``--preset`` and a seeded batch of
random sources 8-30 tokens long (Tatoeba's range), and writes decoding_speed.{json,md,png} (which the whole study
writes too, from its checkpoint): the speed on any machine in a few minutes, without training first.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch

from shared_utils.checkpoint import load_best
from shared_utils.cli import Parser, add_results_flags, nonnegative_int, positive_int, results_folder
from shared_utils.errors import cli_main
from shared_utils.runtime import device_info, pick_device, seed_everything
from shared_utils.stats import bootstrap_corpus, comparison
from shared_utils.timing import interleaved, ratio, time_by_op_family
from translation.config import PRESETS, ModelConfig, TrainConfig, model_config
from translation.data import load_parallel
from translation.decoding import Strategy, beam_search, greedy
from translation.inference import hypotheses, load_translator
from translation.metrics import translation_scores
from translation.model import EOS, PAD, build_model
from translation.reports import write_decoding_report, write_speed_report
from translation.study import LOCAL_DEV, best_checkpoint, hf_generate_forced, matmul_ceiling, source_batch
from translation.tokenizer import decode
from translation.training import select_pairs_from

RESULTS = Path(__file__).resolve().parent / "results"
STRATEGIES = {
    "greedy": Strategy("greedy"),
    "beam2": Strategy("beam", beam_size=2),
    "beam4": Strategy("beam", beam_size=4),
    "beam8": Strategy("beam", beam_size=8),
    "topk10_t0.7": Strategy("sample", top_k=10, temperature=0.7),
    "topk10_t1.0": Strategy("sample", top_k=10, temperature=1.0),
    "topk50_t0.7": Strategy("sample", top_k=50, temperature=0.7),
    "topk50_t1.0": Strategy("sample", top_k=50, temperature=1.0),
    "topp0.9": Strategy("sample", top_p=0.9),
}


def distinct_n(samples: list[str], n: int) -> float:
    """Unique word n-grams / all word n-grams over a sentence's samples (1.0 = no n-gram repeated)."""
    grams = [tuple(words[i: i + n]) for s in samples for words in [s.split()] for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def run_strategy(model, tok, cfg, strategy: Strategy, sources: list[str], refs: list[str], device) -> dict:
    start = time.perf_counter()
    hyps, _ = hypotheses(model, tok, cfg, sources, device, strategy)
    seconds = time.perf_counter() - start
    texts = [decode(tok, h[0].tokens) if h else "" for h in hyps]
    s = translation_scores(texts, refs)
    words = sum(len(t.split()) for t in texts) / max(1, sum(len(r.split()) for r in refs))
    return {"bleu": s["bleu"].score, "chrf": s["chrf"].score, "ms_per_sentence": 1e3 * seconds / len(sources),
            "sentences_per_s": len(sources) / seconds, "length_ratio": words, "hyps": texts}


def diversity(model, tok, cfg, strategy: Strategy, sources: list[str], device, samples: int = 5) -> dict:
    repeated = [s for s in sources for _ in range(samples)]
    hyps, _ = hypotheses(model, tok, cfg, repeated, device, strategy)
    texts = [decode(tok, h[0].tokens) for h in hyps]
    groups = [texts[i: i + samples] for i in range(0, len(texts), samples)]
    return {f"distinct{n}": statistics.mean(distinct_n(g, n) for g in groups) for n in (1, 2)}


def random_batch(vocab_size: int, size: int, device, seed: int = 0) -> torch.Tensor:
    """(size, L) random source ids, 8-30 tokens each with EOS last, PAD after: for timing, where the weights
    (and so the words) do not matter."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(8, 31, (size,), generator=g)
    src = torch.randint(4, vocab_size, (size, int(lengths.max())), generator=g)
    src[torch.arange(size), lengths - 1] = EOS
    return src.masked_fill(torch.arange(src.shape[1]) >= lengths[:, None], PAD).to(device)


def peer_config(cfg: ModelConfig) -> ModelConfig:
    """The Marian peer of ``cfg``'s sizes. It keeps its own FFN, norm and biases, whichever ablations of ours
    ``cfg`` carries (the training benchmark's best system may be RoPE with SwiGLU, RMSNorm, ...)."""
    return replace(cfg, arch="marian", ffn="gelu", norm="layernorm", bias=True)


def side_by_side(model, cfg, src: torch.Tensor, beam: int, new_tokens: int, repeats: int,
                 profile_calls: int) -> dict:
    """Interleaved timings of: our greedy with and without the KV cache; our greedy and beam search against
    ``MarianMTModel.generate`` (same sizes, beams, length penalty, early stopping). Every candidate emits
    exactly ``new_tokens`` tokens per sentence (EOS banned until then), so all do the same work. The time split
    averages ``profile_calls`` profiled calls of each decoder, after a warm-up."""
    seed_everything(0)
    peer = build_model(peer_config(cfg)).to(src.device).eval().hf
    limits = torch.full((src.shape[0],), new_tokens, device=src.device)

    candidates = {
        "greedy": lambda: greedy(model, src, limits, min_len=new_tokens - 1, cache=True),
        "greedy_no_cache": lambda: greedy(model, src, limits, min_len=new_tokens - 1, cache=False),
        "hf_greedy": hf_generate_forced(peer, src, 1, new_tokens),
        f"beam{beam}": lambda: beam_search(model, src, limits, beam_size=beam, min_len=new_tokens - 1,
                                           length_penalty=1.0, early_stopping=True),
        f"hf_beam{beam}": hf_generate_forced(peer, src, beam, new_tokens),
    }
    timings = interleaved(candidates, repeats=repeats)
    profiled = {name: time_by_op_family(candidates[name], runs=profile_calls)
                for name in ("greedy", "hf_greedy", f"beam{beam}", f"hf_beam{beam}")}
    n = src.shape[0]
    return {"batch": n, "beam": beam, "new_tokens": new_tokens, "profile_calls": profile_calls,
            "timings": {name: {**t.as_dict(), "sentences_per_s": n / (t.median_ms / 1e3)}
                        for name, t in timings.items()},
            "time_by_op_family": profiled,
            # what no overhead cut can pass: HF's time over our matmul + attention time
            "ceiling_vs_hf_generate": {ours: matmul_ceiling(timings[f"hf_{ours}"], profiled[ours])
                                       for ours in ("greedy", f"beam{beam}")},
            "kv_cache_speedup": ratio(timings["greedy_no_cache"], timings["greedy"]),
            "greedy_throughput_ratio_vs_hf_generate": ratio(timings["hf_greedy"], timings["greedy"]),
            "beam_throughput_ratio_vs_hf_generate": ratio(timings[f"hf_beam{beam}"], timings[f"beam{beam}"])}


def selection_split(train: dict) -> list:
    """The pairs a checkpoint trained with ``train`` (its TrainConfig as saved) was chosen on: its run's selection
    split, carved again from its training data with the same size and seed (empty if it trained without one)."""
    _, select = select_pairs_from(load_parallel(train["train"]).records, TrainConfig(**train))
    return select








SPEED_KEYS = ("kv_cache_speedup", "greedy_throughput_ratio_vs_hf_generate", "beam_throughput_ratio_vs_hf_generate")


def write_speed(side: dict, command: str, model: dict, device, out: Path) -> dict:
    """decoding_speed.{json,md,png}: the latest side-by-side measurement, from the study or from --speed-only
    (``command`` and ``model`` say which)."""
    result = {"command": command, "model": model, "device_info": device_info(device), "side_by_side": side,
              **{k: side[k] for k in SPEED_KEYS}}
    out.mkdir(parents=True, exist_ok=True)
    (out / "decoding_speed.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    write_speed_report(result, out)
    return result


def speed_only(preset: str, repeats: int, profile_calls: int, out: Path, device) -> None:
    seed_everything(0)
    cfg = model_config(preset)
    model = build_model(cfg).to(device).eval()
    side = side_by_side(model, cfg, random_batch(cfg.vocab_size, 32, device), 4, 32, repeats, profile_calls)
    result = write_speed(side, f"python translation/bench_decoding.py --speed-only --preset {preset}",
                         {"preset": preset, "weights": "untrained (lengths are forced)",
                          "sources": "a seeded batch of 32 random sources of 8-30 tokens"}, device, out)
    print(json.dumps({k: result[k] for k in SPEED_KEYS}, indent=2))


def beam_vs_greedy(strategies: dict, sets: dict, seed: int) -> dict:
    """beam4 - greedy on each set, for BLEU and chrF++, with sacrebleu's paired bootstrap (one checkpoint, trained
    with ``seed``: two decodings of the same model, so no seed separates them and the interval is the evidence)."""
    from sacrebleu.metrics import BLEU, CHRF

    out = {}
    for d, rows in sets.items():
        refs, out[d] = [q.tgt for q in rows], {}
        for name, metric in (("bleu", BLEU()), ("chrf", CHRF(word_order=2))):
            a, b = strategies["beam4"][d], strategies["greedy"][d]
            sa, sb = bootstrap_corpus(metric, [a["hyps"]], [b["hyps"]], refs)
            out[d][name] = comparison("beam4", [a[name]], "greedy", [b[name]], sa - sb, [seed], b_fixed=True)
    return out


@cli_main
def main(argv: list[str] | None = None) -> None:
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=None,
                   help="default: the best system's checkpoint that results/training.json names")
    p.add_argument("--dev", nargs="+", default=LOCAL_DEV)
    p.add_argument("--limit", type=nonnegative_int, default=0, help="sentences per set (0 = all)")
    p.add_argument("--diversity-limit", type=positive_int, default=200, help="sentences sampled 5 times each")
    p.add_argument("--repeats", type=positive_int, default=7, help="interleaved timing rounds (>= 5 for a verdict)")
    p.add_argument("--profile-calls", type=positive_int, default=3,
                   help="profiled calls of each decoder averaged in the time split (torch.profiler)")
    add_results_flags(p, RESULTS, "mt-decoding-results")
    p.add_argument("--device", default="auto")
    p.add_argument("--speed-only", action="store_true",
                   help="only the side-by-side timing, on an untrained --preset model (writes decoding_speed.*)")
    p.add_argument("--preset", default="small", choices=list(PRESETS), help="the model size of --speed-only")
    args = p.parse_args(argv)
    args.out = results_folder(args, RESULTS, "mt-decoding-results")
    device = pick_device(args.device)
    if args.speed_only:
        return speed_only(args.preset, args.repeats, args.profile_calls, args.out, device)
    checkpoint = args.checkpoint if args.checkpoint is not None else best_checkpoint(RESULTS)
    model, tok, cfg = load_translator(checkpoint, device)
    train = load_best(checkpoint).config["train"]
    sets = {"select": selection_split(train)}
    for d in args.dev:
        sets[Path(d).name.removesuffix(".tsv").removesuffix(".fi-en")] = load_parallel(d).records
    sets = {name: rows[: args.limit or None] for name, rows in sets.items() if rows}
    dev_names = [n for n in sets if n != "select"]
    result = {"checkpoint": checkpoint, "model": {"arch": cfg.arch, "positional": cfg.positional},
              "device_info": device_info(device), "machine": platform.processor() or platform.machine(),
              "eval_sets": {d: len(rows) for d, rows in sets.items()}, "strategies": {}}
    for name, strategy in STRATEGIES.items():
        entry = {d: run_strategy(model, tok, cfg, strategy, [q.src for q in rows], [q.tgt for q in rows], device)
                 for d, rows in sets.items()}
        if strategy.strategy == "sample":
            first = sets[dev_names[0]][: args.diversity_limit]
            entry["diversity"] = {"sentences": len(first), "samples": 5,
                                  **diversity(model, tok, cfg, strategy, [q.src for q in first], device)}
        result["strategies"][name] = entry
        print(name, json.dumps({d: round(entry[d]["bleu"], 2) for d in sets}), flush=True)
    deterministic = [n for n, s in STRATEGIES.items() if s.strategy != "sample"]
    chooser = "select" if "select" in sets else dev_names[0]  # without a selection split, say so below
    result["best_strategy"] = max(deterministic, key=lambda n: result["strategies"][n][chooser]["bleu"])
    result["best_strategy_chosen_on"] = chooser
    result["beam4_vs_greedy"] = beam_vs_greedy(result["strategies"], {d: sets[d] for d in dev_names}, train["seed"])
    src = source_batch(tok, [q.src for q in sets[dev_names[0]]][:32], cfg.max_len, device)
    side = side_by_side(model, cfg, src, 4, 32, args.repeats, args.profile_calls)
    result["side_by_side"] = side
    for key in SPEED_KEYS:
        result[key] = side[key]
    for entry in result["strategies"].values():  # the hypotheses served the bootstrap; the file keeps the scores
        for d in sets:
            entry[d].pop("hyps")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "decoding.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    write_decoding_report(result, args.out)
    write_speed(side, "python translation/bench_decoding.py", {"checkpoint": checkpoint,
                                                                "sources": f"the first 32 of {dev_names[0]}"},
                device, args.out)
    print(json.dumps({k: result[k] for k in ("kv_cache_speedup", "beam_throughput_ratio_vs_hf_generate",
                                             "greedy_throughput_ratio_vs_hf_generate", "best_strategy")}, indent=2))


if __name__ == "__main__":
    main()
