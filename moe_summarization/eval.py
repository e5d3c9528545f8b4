"""Summarize documents with a trained checkpoint; score ROUGE-1/2/L/Lsum (stemmed) and BERTScore F1, next to
the lead-1 baseline (the document's first sentence) on the same documents.

    python moe_summarization/eval.py --checkpoint runs/sum-moe --data ../shared/data/xsum-style/dev.jsonl \\
        --out-dir runs/sum-moe/eval-dev

Writes ``predictions.jsonl`` (id, source, document head, reference, prediction, lead-1) and ``metrics.json``.
BERTScore uses ``roberta-large`` when the hub is reachable and the offline MiniLM package otherwise
(``--bertscore-model`` chooses); every metrics file names the model it used.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from moe_summarization.data import Doc, load_documents
from moe_summarization.inference import default_bertscore_model, lead1, load_summarizer, summarize, summary_metrics
from shared_utils.cli import Parser, data_source, nonnegative_int, output_dir, user_path
from shared_utils.errors import UserError, cli_main
from shared_utils.runtime import pick_device

DATA_HINT = "pass --data ../shared/data/xsum/test-sample.jsonl (or another local JSONL with document/summary)"


OUTPUTS = ("predictions.jsonl", "metrics.json")


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
    p.add_argument("--checkpoint", required=True, type=user_path,
                   help="run folder (best checkpoint) or checkpoint folder")
    p.add_argument("--data", default="hf:EdinburghNLP/xsum::test", type=data_source,
                   help="JSONL {document, summary} or hf:... (default: %(default)s)")
    p.add_argument("--limit", type=nonnegative_int, default=0, help="first N documents (0 = all)")
    p.add_argument("--out-dir", type=output_dir, required=True,
                   help="folder for predictions.jsonl and metrics.json (made if missing; an existing metrics.json "
                        "is never overwritten)")
    p.add_argument("--beam-size", type=int, default=4, help="beams kept")
    p.add_argument("--length-penalty", type=float, default=1.0, help="beam score = logprob / length**this")
    p.add_argument("--min-len", type=int, default=0, help="summary tokens before EOS is allowed")
    p.add_argument("--no-repeat-ngram", type=int, default=3, help="forbid repeating n-grams of this size (0: off)")
    p.add_argument("--bertscore-model", default=None, help="roberta-large, minilm, or a local model folder "
                                                           "(default: roberta-large online, minilm offline)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    args = p.parse_args(argv)
    if args.beam_size < 1 or args.min_len < 0 or args.no_repeat_ngram < 0:
        raise UserError("--beam-size must be >= 1, --min-len and --no-repeat-ngram >= 0")
    taken = [args.out_dir / name for name in OUTPUTS if (args.out_dir / name).exists()]
    if taken:
        raise UserError(f"--out-dir {args.out_dir} already holds {taken[0].name}: pass another folder, or move it "
                        "away")
    device = pick_device(args.device)
    docs = load_documents(args.data, local_hint=DATA_HINT).require("--data").records[: args.limit or None]
    model, tok, cfg = load_summarizer(args.checkpoint, device)
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
