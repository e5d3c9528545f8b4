"""Summarize documents with a trained checkpoint; score ROUGE-1/2/L/Lsum (stemmed) and BERTScore F1, next to
the lead-1 baseline (the document's first sentence) on the same documents.

    python moe_summarization/eval.py --checkpoint runs/sum-moe --data ../shared/data/summarization/dev.jsonl \\
        --out-dir runs/sum-moe/eval-dev

Writes ``predictions.jsonl`` (id, source, document head, reference, prediction, lead-1) and ``metrics.json``.
BERTScore uses ``roberta-large`` when the hub is reachable and the offline MiniLM package otherwise
(``--bertscore-model`` chooses); every metrics file names the model it used.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from moe_summarization.config import SummarizerConfig
from moe_summarization.data import encode_documents
from moe_summarization.decoding import beam_search
from moe_summarization.model import restore_model
from moe_summarization.tokenizer import decode, load_tokenizer
from shared_utils.batching import collate, token_batches
from shared_utils.checkpoint import load_best
from shared_utils.cli import Parser, nonnegative_int
from shared_utils.data import Doc, load_documents
from shared_utils.errors import UserError, cli_main
from shared_utils.hub import hub_reachable, offline_requested
from shared_utils.metrics import bertscore_per_item, rouge_per_item, split_sentences
from shared_utils.runtime import pick_device

DATA_HINT = "pass --data ../shared/data/xsum/test-sample.jsonl (or another local JSONL with document/summary)"


def default_bertscore_model() -> str:
    """roberta-large (what papers report) when the hub can be reached, else the offline MiniLM package."""
    return "roberta-large" if not offline_requested() and hub_reachable() else "minilm"


def lead1(document: str) -> str:
    """The first sentence (first line for line-broken documents): the classic extractive baseline."""
    first_line = document.strip().split("\n", 1)[0]
    sentences = split_sentences(first_line)
    return sentences[0] if sentences else first_line


def summary_item_scores(preds: list[str], refs: list[str], bertscore_model: str) -> dict[str, list[float]]:
    """ROUGE-1/2/L/Lsum and BERTScore F1 of every document (x100): what the paired bootstrap resamples."""
    return {**rouge_per_item(preds, refs), "bertscore_f1": bertscore_per_item(preds, refs, model=bertscore_model)}


def summary_metrics(preds: list[str], refs: list[str], bertscore_model: str) -> dict[str, float]:
    """The corpus scores: the mean of :func:`summary_item_scores` over the documents."""
    return {k: sum(v) / max(len(v), 1) for k, v in summary_item_scores(preds, refs, bertscore_model).items()}


def load_summarizer(path: str | Path, device: torch.device):
    """(model, tokenizer, config) from a run folder's best (else latest) checkpoint, or a checkpoint folder."""
    ckpt = load_best(path)
    model, cfg = restore_model(ckpt)
    if not (ckpt.path / "tokenizer.json").is_file():
        raise UserError(f"{ckpt.path} has no tokenizer.json, so it cannot summarize; retrain into a new --out")
    return model.to(device).eval(), load_tokenizer(ckpt.read_text("tokenizer.json")), cfg


def summarize(model, tok, cfg: SummarizerConfig, docs: list[Doc], device, *, beam_size: int = 4,
              length_penalty: float = 1.0, min_len: int = 0, no_repeat_ngram: int = 3,
              batch_tokens: int = 8000) -> list[str]:
    """Beam-search summaries in input order (documents truncated to the model's max_source_len)."""
    data = encode_documents(tok, docs, cfg.max_source_len, cfg.max_target_len)
    out = [""] * len(docs)
    for idx in token_batches(data, max(batch_tokens // beam_size, cfg.max_source_len + cfg.max_target_len),
                             seed=0, epoch=0):
        src, _ = collate(data, idx, device)
        found = beam_search(model, src, beam_size=beam_size, length_penalty=length_penalty, min_len=min_len,
                            max_len=cfg.max_target_len, no_repeat_ngram=no_repeat_ngram)
        for i, hyps in zip(idx, found):
            out[i] = decode(tok, hyps[0].tokens)
    return out


def write_outputs(out_dir: Path, docs: list[Doc], preds: dict[str, list[str]], metrics: dict) -> None:
    """predictions.jsonl (one row per document, every system's output) and metrics.json."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "predictions.jsonl").open("w", encoding="utf-8") as f:
        for i, d in enumerate(docs):
            row = {"id": d.id, "source": d.source, "document": d.document[:300], "reference": d.summary,
                   **{name: p[i] for name, p in preds.items()}}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")


@cli_main
def main(argv: list[str] | None = None) -> None:
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="run folder (best checkpoint) or checkpoint folder")
    p.add_argument("--data", default="hf:EdinburghNLP/xsum::test", help="JSONL {document, summary} or hf:...")
    p.add_argument("--limit", type=nonnegative_int, default=0, help="first N documents (0 = all)")
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("--beam-size", type=int, default=4)
    p.add_argument("--length-penalty", type=float, default=1.0)
    p.add_argument("--min-len", type=int, default=0, help="summary tokens before EOS is allowed")
    p.add_argument("--no-repeat-ngram", type=int, default=3)
    p.add_argument("--bertscore-model", default=None, help="roberta-large, minilm, or a local model folder "
                                                           "(default: roberta-large online, minilm offline)")
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    if args.beam_size < 1 or args.min_len < 0 or args.no_repeat_ngram < 0:
        raise UserError("--beam-size must be >= 1, --min-len and --no-repeat-ngram >= 0")
    device = pick_device(args.device)
    model, tok, cfg = load_summarizer(args.checkpoint, device)
    docs = load_documents(args.data, local_hint=DATA_HINT).records[: args.limit or None]
    bert_model = args.bertscore_model or default_bertscore_model()
    preds = {"prediction": summarize(model, tok, cfg, docs, device, beam_size=args.beam_size,
                                     length_penalty=args.length_penalty, min_len=args.min_len,
                                     no_repeat_ngram=args.no_repeat_ngram),
             "lead1": [lead1(d.document) for d in docs]}
    refs = [d.summary for d in docs]
    metrics = {"data": args.data, "documents": len(docs), "bertscore_model": bert_model,
               "model": summary_metrics(preds["prediction"], refs, bert_model),
               "lead1": summary_metrics(preds["lead1"], refs, bert_model)}
    write_outputs(args.out_dir, docs, preds, metrics)
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
