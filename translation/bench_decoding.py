"""The decoding study: what each strategy costs and buys, for the best checkpoint of the training benchmark.

    python translation/bench_decoding.py                        # after bench_training.py; ~20 min on 2 CPU cores
    python translation/bench_decoding.py --checkpoint runs/mt-rope --limit 200 --out /tmp/dec   # any checkpoint

For greedy, beam 2/4/8, top-k (k = 10, 50; T = 0.7, 1.0) and top-p 0.9: BLEU / chrF++ and batched latency on
both dev sets, and the diversity of sampled outputs (distinct-1/2 over 5 samples per sentence). Then, side by
side in the same process: greedy with and without the KV cache (64 new tokens), and batched beam search
(beam 4, batch 32) against Hugging Face ``generate()`` on a ``MarianMTModel`` of identical size — both forced
to the same output length, so both do the same work whatever their weights. Finally the three position
schemes under the best strategy. Writes results/decoding.{json,md} and decoding_*.png.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from shared_utils.cli import Parser
from shared_utils.data import load_parallel
from shared_utils.errors import UserError, cli_main
from shared_utils.metrics import translation_scores
from shared_utils.runtime import device_info, pick_device, seed_everything
from translation.config import POSITIONALS
from translation.decoding import Strategy, beam_search, greedy
from translation.inference import hypotheses, load_translator
from translation.model import BOS, EOS, PAD
from translation.tokenizer import decode

RESULTS = Path(__file__).resolve().parent / "results"
LOCAL = "../shared/data/translation"
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
    texts = [decode(tok, h[0].tokens) for h in hyps]
    s = translation_scores(texts, refs)
    words = sum(len(t.split()) for t in texts) / max(1, sum(len(r.split()) for r in refs))
    return {"bleu": s["bleu"].score, "chrf": s["chrf"].score, "ms_per_sentence": 1e3 * seconds / len(sources),
            "sentences_per_s": len(sources) / seconds, "length_ratio": words}


def diversity(model, tok, cfg, strategy: Strategy, sources: list[str], device, samples: int = 5) -> dict:
    repeated = [s for s in sources for _ in range(samples)]
    hyps, _ = hypotheses(model, tok, cfg, repeated, device, strategy)
    texts = [decode(tok, h[0].tokens) for h in hyps]
    groups = [texts[i: i + samples] for i in range(0, len(texts), samples)]
    return {f"distinct{n}": statistics.mean(distinct_n(g, n) for g in groups) for n in (1, 2)}


def timed(fn, repeats: int) -> float:
    """Median seconds of ``repeats`` calls after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def batch_of(tok, sources: list[str], size: int, device) -> torch.Tensor:
    rows = [e.ids[:60] + [EOS] for e in tok.encode_batch(sources[:size])]
    src = torch.full((len(rows), max(map(len, rows))), PAD, dtype=torch.long)
    for i, r in enumerate(rows):
        src[i, : len(r)] = torch.tensor(r)
    return src.to(device)


def kv_cache_speedup(model, src: torch.Tensor, new_tokens: int, repeats: int) -> dict:
    """Greedy decoding of exactly ``new_tokens`` tokens (EOS banned until then), cached vs recomputed prefix."""
    limits = torch.full((src.shape[0],), new_tokens, device=src.device)
    cached = timed(lambda: greedy(model, src, limits, min_len=new_tokens - 1, cache=True), repeats)
    uncached = timed(lambda: greedy(model, src, limits, min_len=new_tokens - 1, cache=False), repeats)
    return {"batch": src.shape[0], "new_tokens": new_tokens, "cached_s": cached, "uncached_s": uncached,
            "speedup": uncached / cached}


def beam_vs_hf(model, cfg, src: torch.Tensor, beam: int, new_tokens: int, repeats: int) -> dict:
    """Sentences/s of our beam search and of ``MarianMTModel.generate`` (same sizes, beams, length penalty,
    early stopping), both made to emit exactly ``new_tokens`` tokens so their work is the same."""
    from translation.bench_training import marian_peer

    seed_everything(0)
    peer = marian_peer(cfg).to(src.device).eval()
    limits = torch.full((src.shape[0],), new_tokens, device=src.device)
    ours = timed(lambda: beam_search(model, src, limits, beam_size=beam, min_len=new_tokens - 1,
                                     length_penalty=1.0, early_stopping=True), repeats)

    def hf():
        with torch.no_grad():
            out = peer.generate(input_ids=src, attention_mask=src != PAD, num_beams=beam, do_sample=False,
                                max_new_tokens=new_tokens, min_new_tokens=new_tokens, length_penalty=1.0,
                                early_stopping=True, forced_eos_token_id=EOS, decoder_start_token_id=BOS)
        assert out.shape[1] == new_tokens + 1, out.shape  # BOS + the forced length: the same work as ours

    theirs = timed(hf, repeats)
    n = src.shape[0]
    return {"batch": n, "beam": beam, "new_tokens": new_tokens, "ours_sentences_per_s": n / ours,
            "hf_sentences_per_s": n / theirs, "ratio": theirs / ours}


def write_report(result: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    devs = result["dev_sets"]
    lines = [f"# Decoding study ({result['device']}, {result['machine']}, {result['torch_threads']} thread(s))", "",
             f"Checkpoint: `{result['checkpoint']}` ({result['scheme']}); "
             f"{', '.join(f'{d}: {n} sentences' for d, n in devs.items())}; batched by a 4,000-token budget "
             "(beam search: 4,000 / beam size); sampling scores the first sample (seed 0).", "",
             "| strategy | " + " | ".join(f"{d} BLEU | {d} chrF++ | {d} ms/sent" for d in devs)
             + " | distinct-1 | distinct-2 |", "| --- |" + " ---: |" * (3 * len(devs) + 2)]
    for name, r in result["strategies"].items():
        cells = " | ".join(f"{r[d]['bleu']:.2f} | {r[d]['chrf']:.2f} | {r[d]['ms_per_sentence']:.1f}" for d in devs)
        div = r.get("diversity")
        lines.append(f"| {name} | {cells} | " + (f"{div['distinct1']:.3f} | {div['distinct2']:.3f} |" if div
                                                    else "– | – |"))
    kv, hf = result["kv_cache"], result["beam_vs_hf"]
    lines += ["", f"KV cache: greedy, {kv['new_tokens']} new tokens, batch {kv['batch']}: "
              f"{kv['uncached_s'] * 1e3:.0f} ms recomputing the prefix vs {kv['cached_s'] * 1e3:.0f} ms cached: "
              f"**{result['kv_cache_speedup']:.2f}x**.",
              f"Beam search (beam {hf['beam']}, batch {hf['batch']}, {hf['new_tokens']} tokens): ours "
              f"{hf['ours_sentences_per_s']:.1f} sent/s vs HF `generate()` on MarianMTModel "
              f"{hf['hf_sentences_per_s']:.1f} sent/s: **{result['beam_throughput_ratio_vs_hf_generate']:.2f}x**.",
              "", "Beam 4 minus greedy BLEU: " + ", ".join(f"{d} {v:+.2f}" for d, v in
                                                         result["beam4_minus_greedy_bleu"].items()), ""]
    if result.get("beam_note"):
        lines += [result["beam_note"], ""]
    lines += [f"Position schemes under `{result['best_strategy']}`:", "",
              "| scheme | " + " | ".join(f"{d} BLEU | {d} chrF++" for d in devs) + " |",
              "| --- |" + " ---: |" * (2 * len(devs))]
    for scheme, r in result["schemes"].items():
        lines.append(f"| {scheme} | " + " | ".join(f"{r[d]['bleu']:.2f} | {r[d]['chrf']:.2f}" for d in devs) + " |")
    (out / "decoding.md").write_text("\n".join(lines) + "\n", encoding="utf-8")

    fig, axes = plt.subplots(1, len(devs), figsize=(5 * len(devs), 4), squeeze=False)
    for ax, d in zip(axes[0], devs):
        for name, r in result["strategies"].items():
            ax.scatter(r[d]["ms_per_sentence"], r[d]["bleu"], label=name)
            ax.annotate(name, (r[d]["ms_per_sentence"], r[d]["bleu"]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel("ms per sentence (batched)")
        ax.set_ylabel("BLEU")
        ax.set_title(d)
    fig.tight_layout()
    fig.savefig(out / "decoding_quality_vs_latency.png", dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.bar(["no cache", "KV cache", "HF generate\n(beam 4)", "ours\n(beam 4)"],
           [1 / kv["uncached_s"], 1 / kv["cached_s"], hf["hf_sentences_per_s"] / hf["batch"],
            hf["ours_sentences_per_s"] / hf["batch"]], color=["grey", "C0", "grey", "C1"])
    ax.set_ylabel("batches per second")
    ax.set_title("side-by-side decoding speed")
    fig.tight_layout()
    fig.savefig(out / "decoding_speed.png", dpi=110)
    plt.close(fig)


@cli_main
def main(argv: list[str] | None = None) -> None:
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=None,
                   help="default: the best scheme of results/training.json, from --runs")
    p.add_argument("--runs", type=Path, default=Path("runs/mt-bench"), help="the training benchmark's runs")
    p.add_argument("--dev", nargs="+",
                   default=[f"{LOCAL}/dev.tatoeba.fi-en.tsv", f"{LOCAL}/dev.newstest2018.fi-en.tsv"])
    p.add_argument("--limit", type=int, default=0, help="sentences per dev set (0 = all)")
    p.add_argument("--diversity-limit", type=int, default=200, help="sentences sampled 5 times each")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats of the side-by-side measurements")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    device = pick_device(args.device)
    checkpoint = args.checkpoint
    if checkpoint is None:
        training = RESULTS / "training.json"
        if not training.is_file():
            raise UserError(f"{training} not found: run translation/bench_training.py first, or pass --checkpoint")
        checkpoint = str(args.runs / json.loads(training.read_text())["best_scheme"])
    model, tok, cfg = load_translator(checkpoint, device)
    dev_sets = {}
    for d in args.dev:
        rows = load_parallel(d).records
        dev_sets[Path(d).name.removesuffix(".tsv").removesuffix(".fi-en")] = rows[: args.limit or None]
    result = {"checkpoint": checkpoint, "scheme": cfg.positional, "device": str(device),
              "device_info": device_info(device),
              "machine": platform.processor() or platform.machine(), "torch_threads": torch.get_num_threads(),
              "dev_sets": {d: len(rows) for d, rows in dev_sets.items()}, "strategies": {}}
    for name, strategy in STRATEGIES.items():
        entry = {d: run_strategy(model, tok, cfg, strategy, [q.src for q in rows], [q.tgt for q in rows], device)
                 for d, rows in dev_sets.items()}
        if strategy.strategy == "sample":
            first = next(iter(dev_sets.values()))[: args.diversity_limit]
            entry["diversity"] = {"sentences": len(first), "samples": 5,
                                  **diversity(model, tok, cfg, strategy, [q.src for q in first], device)}
        result["strategies"][name] = entry
        print(name, json.dumps({d: round(entry[d]["bleu"], 2) for d in dev_sets}), flush=True)
    src = batch_of(tok, [q.src for q in next(iter(dev_sets.values()))], 32, device)
    result["kv_cache"] = kv_cache_speedup(model, src, 64, args.repeats)
    result["kv_cache_speedup"] = result["kv_cache"]["speedup"]
    result["beam_vs_hf"] = beam_vs_hf(model, cfg, src, 4, 32, args.repeats)
    result["beam_throughput_ratio_vs_hf_generate"] = result["beam_vs_hf"]["ratio"]
    result["beam4_minus_greedy_bleu"] = {d: result["strategies"]["beam4"][d]["bleu"]
                                         - result["strategies"]["greedy"][d]["bleu"] for d in dev_sets}
    short = {d: v for d, v in result["beam4_minus_greedy_bleu"].items() if v < 0.5}
    if short:
        ratios = {d: tuple(result["strategies"][s][d]["length_ratio"] for s in ("greedy", "beam4")) for d in short}
        result["beam_note"] = ("Beam 4 gains less than 0.5 BLEU over greedy on " + ", ".join(
            f"{d} ({v:+.2f}; hypothesis/reference length greedy {ratios[d][0]:.3f}, beam 4 {ratios[d][1]:.3f})"
            for d, v in short.items()) + ".")
    deterministic = [n for n, s in STRATEGIES.items() if s.strategy != "sample"]
    best = max(deterministic, key=lambda n: statistics.mean(result["strategies"][n][d]["bleu"] for d in dev_sets))
    result["best_strategy"] = best
    result["schemes"] = {}
    run_root = Path(checkpoint).parent
    for scheme in POSITIONALS:
        run = run_root / scheme
        if not (run / "checkpoints").is_dir():
            continue
        m, t, c = load_translator(run, device)
        result["schemes"][scheme] = {d: run_strategy(m, t, c, STRATEGIES[best], [q.src for q in rows],
                                                     [q.tgt for q in rows], device) for d, rows in dev_sets.items()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "decoding.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    write_report(result, args.out)
    print(json.dumps({k: result[k] for k in ("kv_cache_speedup", "beam_throughput_ratio_vs_hf_generate",
                                             "beam4_minus_greedy_bleu", "best_strategy")}, indent=2))


if __name__ == "__main__":
    main()
