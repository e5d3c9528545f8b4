"""Translation against the engine people deploy with: CTranslate2 at fp32 and int8, beside our decoder and Hugging
Face ``generate()``, on the training benchmark's checkpoints (our best system and the Marian peer, same seed).

    python translation/bench_deploy.py --publish           # after bench_training.py; ~10 min on 2 CPU cores
    python translation/bench_deploy.py --limit 200         # a quick look, into runs/mt-deploy-results

1. Both checkpoints are exported (``translation/deploy.py``: ours through CTranslate2's spec API, the peer
   through its Transformers converter with the peer's vocabulary layout). Before anything is timed, the proof:
   at fp32 each export's greedy outputs on dev.tatoeba are token-identical to the PyTorch model's on at least
   99% of sentences, with BLEU within 0.1; otherwise the benchmark stops.
2. Quality: greedy BLEU / chrF++ of every engine and precision on both dev sets; int8 against fp32 with
   sacrebleu's paired bootstrap (one checkpoint decoded twice, so the interval is the evidence).
3. Speed, interleaved rounds of ``torch.utils.benchmark`` (median, IQR, 95% interval of the median ratio): the
   first 32 sentences of dev.tatoeba at batch 32, greedy and beam 4, every engine forced to 32 new tokens per
   sentence (the decoding study's setting, so all do the same work); and batch-1 latency over real sentences
   at their natural length, the interactive case. CTranslate2 runs with torch's thread count.
4. Our decoder against CTranslate2 on the same model: the time ratio, and ``torch.profiler``'s operator families
   for ours beside CTranslate2's total (it exposes no profile to Python), which says how much of our time a
   faster GEMM alone could remove. Tried to close the gap: int8 dynamic linears (``quantize_dynamic``; the tied
   output projection stays fp32), timed and scored like the rest.

Writes deploy.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from shared_utils.cli import Parser, add_results_flags, nonnegative_int, positive_int, results_folder, user_path
from shared_utils.errors import UserError, cli_main
from shared_utils.runtime import device_info, seed_everything
from shared_utils.stats import bootstrap_corpus, comparison
from shared_utils.timing import interleaved, ratio, time_by_op_family
from translation.data import load_parallel
from translation.decoding import Strategy, beam_search, greedy
from translation.deploy import Engine, export
from translation.inference import TorchTranslator
from translation.metrics import translation_scores
from translation.model import BOS, EOS
from translation.reports import write_deploy_report
from translation.study import LOCAL_DEV, best_checkpoint, hf_generate_forced, source_batch
from translation.tokenizer import decode

RESULTS = Path(__file__).resolve().parent / "results"
BATCH, NEW_TOKENS, BEAM = 32, 32, 4
PROOF_SHARE, PROOF_BLEU = 0.99, 0.1  # the bar: identical greedy outputs on 99% of sentences, BLEU within 0.1


def default_checkpoints() -> tuple[Path, Path]:
    """Our best system's checkpoint as results/training.json names it, and the Marian peer of the same seed."""
    ours = Path(best_checkpoint(RESULTS))
    return ours, ours.with_name("marian_peer_" + ours.name.rsplit("_", 1)[1])


def int8_dynamic(translator: TorchTranslator) -> TorchTranslator:
    """A copy whose nn.Linear layers run torch's dynamic int8 kernels (weights per tensor, activations per batch)."""
    import copy
    import warnings

    quantized = copy.copy(translator)
    with warnings.catch_warnings():  # torch.ao's eager API is deprecated for torchao's, which has no CPU int8 dynamic
        warnings.simplefilter("ignore")  # linear kernel of its own (quantization/ compares both)
        quantized.model = torch.ao.quantization.quantize_dynamic(copy.deepcopy(translator.model), {torch.nn.Linear},
                                                                 dtype=torch.qint8)
    return quantized


def texts(translator, sources: list[str]) -> tuple[list[str], list[list[int]]]:
    hyps, _ = translator.hypotheses(sources, Strategy())
    return [decode(translator.tok, h[0].tokens) if h else "" for h in hyps], [h[0].tokens if h else [] for h in hyps]


def proof(reference: TorchTranslator, engine: Engine, rows: list) -> dict:
    """Greedy outputs of the fp32 export against the PyTorch model's, on one dev set."""
    sources, refs = [p.src for p in rows], [p.tgt for p in rows]
    (ref_texts, ref_ids), (eng_texts, eng_ids) = texts(reference, sources), texts(engine, sources)
    bleu = {name: translation_scores(t, refs)["bleu"].score for name, t in (("torch", ref_texts), ("ct2", eng_texts))}
    share = sum(a == b for a, b in zip(ref_ids, eng_ids)) / len(rows)
    return {"sentences": len(rows), "identical_share": share, "bleu_torch": bleu["torch"], "bleu_ctranslate2":
            bleu["ct2"], "bleu_diff": bleu["ct2"] - bleu["torch"],
            "holds": share >= PROOF_SHARE and abs(bleu["ct2"] - bleu["torch"]) <= PROOF_BLEU}


def quality(engines: dict, dev_sets: dict) -> tuple[dict, dict]:
    """Greedy BLEU / chrF++ of every engine on every set, and the hypotheses."""
    scores, hyps = {}, {}
    for name, engine in engines.items():
        hyps[name] = {d: texts(engine, [p.src for p in rows])[0] for d, rows in dev_sets.items()}
        scores[name] = {d: {k: s.score for k, s in translation_scores(hyps[name][d], [p.tgt for p in rows]).items()}
                        for d, rows in dev_sets.items()}
    return scores, hyps


def change(a: str, b: str, scores: dict, hyps: dict, dev_sets: dict) -> dict:
    """a - b on each set (BLEU, chrF++), sacrebleu-style paired bootstrap: the same checkpoint decoded two ways."""
    from sacrebleu.metrics import BLEU, CHRF

    out = {}
    for d, rows in dev_sets.items():
        refs, out[d] = [p.tgt for p in rows], {}
        for metric_name, metric in (("bleu", BLEU()), ("chrf", CHRF(word_order=2))):
            sa, sb = bootstrap_corpus(metric, [hyps[a][d]], [hyps[b][d]], refs)
            out[d][metric_name] = comparison(a, [scores[a][d][metric_name]], b, [scores[b][d][metric_name]],
                                             sa - sb, [0], b_fixed=True)
    return out


def forced_candidates(torch_models: dict, hf_peer, engines: dict, sources: list[str]) -> tuple[dict, int]:
    """Batch-32 candidates, every one emitting exactly the same number of tokens per sentence (EOS banned until
    then): NEW_TOKENS, or fewer where the models' position tables are shorter. Returns them and that number."""
    any_model = next(iter(torch_models.values()))
    src = source_batch(any_model.tok, sources, any_model.cfg.max_len)
    new_tokens = min(NEW_TOKENS, any_model.cfg.max_len)
    limits = torch.full((src.shape[0],), new_tokens)

    def ours(model, beam: int):
        if beam == 1:
            return lambda: greedy(model, src, limits, min_len=new_tokens - 1)
        return lambda: beam_search(model, src, limits, beam_size=beam, min_len=new_tokens - 1, length_penalty=1.0)

    def ct2(engine: Engine, beam: int):
        tokens = engine.sources(sources)[0]

        def run():
            out = engine.translator.translate_batch(tokens, beam_size=beam, min_decoding_length=new_tokens,
                                                    max_decoding_length=new_tokens)
            assert all(len(r.hypotheses[0]) == new_tokens for r in out)  # no EOS: as many decoder steps as ours
        return run

    out = {}
    for beam, mode in ((1, "greedy"), (BEAM, f"beam{BEAM}")):
        out.update({f"{name}_{mode}": ours(t.model, beam) for name, t in torch_models.items()})
        out[f"hf_generate_{mode}"] = hf_generate_forced(hf_peer, src, beam, new_tokens)
        out.update({f"{name}_{mode}": ct2(engine, beam) for name, engine in engines.items()})
    return out, new_tokens


def latency_candidates(torch_models: dict, hf_peer, engines: dict, sources: list[str]) -> dict:
    """Batch 1, one real sentence after another at its natural length, greedy: the interactive case."""
    any_model = next(iter(torch_models.values()))
    singles = [source_batch(any_model.tok, [s], any_model.cfg.max_len) for s in sources]

    def hf():
        with torch.no_grad():
            for src in singles:
                hf_peer.generate(input_ids=src, num_beams=1, do_sample=False, max_new_tokens=any_model.cfg.max_len,
                                 decoder_start_token_id=BOS, eos_token_id=EOS)

    out = {name: (lambda t=t: [t.hypotheses([s]) for s in sources]) for name, t in torch_models.items()}
    out["hf_generate"] = hf
    out.update({name: (lambda e=e: [e.hypotheses([s]) for s in sources]) for name, e in engines.items()})
    return out


def timing_table(timings: dict, per_call: int) -> dict:
    return {name: {**t.as_dict(), "ms_per_sentence": t.median_ms / per_call} for name, t in timings.items()}


@cli_main
def main(argv: list[str] | None = None) -> None:
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=user_path, default=None,
                   help="ours (default: the best checkpoint results/training.json names)")
    p.add_argument("--peer", type=user_path, default=None,
                   help="the Marian peer (default: marian_peer_seed<N> beside --checkpoint's default)")
    p.add_argument("--dev", nargs="+", default=LOCAL_DEV)
    p.add_argument("--limit", type=nonnegative_int, default=0, help="sentences per dev set (0 = all)")
    p.add_argument("--latency-sentences", type=positive_int, default=20, help="real sentences timed at batch 1")
    p.add_argument("--repeats", type=positive_int, default=7, help="interleaved timing rounds (>= 5 for a verdict)")
    p.add_argument("--exports", type=Path, default=Path("runs/mt-deploy-exports"), help="where the exports go")
    add_results_flags(p, RESULTS, "mt-deploy-results")
    args = p.parse_args(argv)
    out = results_folder(args, RESULTS, "mt-deploy-results")
    ours_path, peer_path = default_checkpoints() if args.checkpoint is None else (args.checkpoint, None)
    peer_path = args.peer or peer_path
    if peer_path is None:
        raise UserError("--checkpoint given without --peer: name the Marian peer's run folder too")
    dev_sets = {Path(d).name.removesuffix(".tsv").removesuffix(".fi-en"): load_parallel(d).records for d in args.dev}
    if args.limit:
        dev_sets = {d: rows[: args.limit] for d, rows in dev_sets.items()}
    seed_everything(0)
    cpu, threads = torch.device("cpu"), torch.get_num_threads()
    torch_models = {"ours": TorchTranslator(ours_path, cpu)}
    peer = TorchTranslator(peer_path, cpu)
    if peer.cfg.arch != "marian" or torch_models["ours"].cfg.arch == "marian":
        raise UserError(f"--checkpoint must be ours and --peer the Marian peer; got {ours_path} and {peer_path}")
    for name, path in (("ours", ours_path), ("peer", peer_path)):
        export(path, args.exports / name, force=True)
    engines = {f"ct2_{name}_{precision}": Engine(args.exports / name, precision, threads=threads)
               for name in ("peer", "ours") for precision in ("float32", "int8")}
    first_set = next(iter(dev_sets))
    proofs = {"ours": proof(torch_models["ours"], engines["ct2_ours_float32"], dev_sets[first_set]),
              "peer": proof(peer, engines["ct2_peer_float32"], dev_sets[first_set])}
    print(json.dumps(proofs, indent=1))
    if not all(p["holds"] for p in proofs.values()):
        raise UserError(f"the fp32 exports do not reproduce the PyTorch models' greedy outputs on {first_set} "
                        f"(need {PROOF_SHARE:.0%} identical and BLEU within {PROOF_BLEU}): nothing is timed")
    torch_models["ours_int8_dynamic"] = int8_dynamic(torch_models["ours"])
    scores, hyps = quality({**torch_models, "peer_torch": peer, **engines}, dev_sets)
    changes = {"ct2_ours_int8_vs_float32": change("ct2_ours_int8", "ct2_ours_float32", scores, hyps, dev_sets),
               "ct2_peer_int8_vs_float32": change("ct2_peer_int8", "ct2_peer_float32", scores, hyps, dev_sets),
               "ours_int8_dynamic_vs_ours": change("ours_int8_dynamic", "ours", scores, hyps, dev_sets)}
    sources = [p.src for p in load_parallel(args.dev[0]).records]
    candidates, new_tokens = forced_candidates(torch_models, peer.model.hf, engines, sources[:BATCH])
    forced = interleaved(candidates, repeats=args.repeats)
    latency = interleaved(latency_candidates({"ours": torch_models["ours"]}, peer.model.hf, engines,
                                             sources[BATCH: BATCH + args.latency_sentences]), repeats=args.repeats)
    profile = time_by_op_family(candidates["ours_greedy"])
    ratios = {}
    for mode in ("greedy", f"beam{BEAM}"):
        for name in ("ct2_peer_float32", "ct2_peer_int8", "ours"):
            ratios[f"{name}_{mode}_speedup_vs_hf_generate"] = ratio(forced[f"hf_generate_{mode}"],
                                                                    forced[f"{name}_{mode}"])
        for name in ("ours", "ours_int8_dynamic"):
            ratios[f"{name}_{mode}_time_vs_ct2_ours_float32"] = ratio(forced[f"{name}_{mode}"],
                                                                      forced[f"ct2_ours_float32_{mode}"])
        ratios[f"ct2_ours_int8_{mode}_speedup_vs_ct2_ours_float32"] = ratio(forced[f"ct2_ours_float32_{mode}"],
                                                                            forced[f"ct2_ours_int8_{mode}"])
    for name in ("ct2_peer_float32", "ct2_peer_int8", "ours"):
        ratios[f"{name}_batch1_speedup_vs_hf_generate"] = ratio(latency["hf_generate"], latency[name])
    ratios["ours_batch1_time_vs_ct2_ours_float32"] = ratio(latency["ours"], latency["ct2_ours_float32"])
    result = {
        "command": "python translation/bench_deploy.py" + (" --publish" if args.publish else ""),
        "checkpoints": {"ours": str(ours_path), "peer": str(peer_path)},
        "device_info": {**device_info(cpu), "ctranslate2_threads": threads},
        "dev_sets": {d: len(rows) for d, rows in dev_sets.items()},
        "proof": proofs, "quality": scores, "int8_changes": changes,
        "speed": {"batch": BATCH, "new_tokens": new_tokens, "beam": BEAM,
                  "timings": timing_table(forced, BATCH)},
        "latency": {"sentences": args.latency_sentences, "timings": timing_table(latency, args.latency_sentences)},
        "ours_profile_greedy": profile,
        "ratios": ratios,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "deploy.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    write_deploy_report(result, out)
    print(json.dumps({k: round(v["median"], 3) for k, v in ratios.items()}, indent=1))


if __name__ == "__main__":
    main()
