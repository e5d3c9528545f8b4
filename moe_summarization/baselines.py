"""Pretrained baselines on the same documents and metrics: BART fine-tuned on XSum, T5 with its
``summarize:`` prefix, and Llama-3-8B-Instruct zero-shot (one-sentence prompt through its chat template).

    python moe_summarization/baselines.py --data ../shared/data/xsum/test-sample.jsonl --out results/baselines.json

Each runs when the hub (or a local model folder, ``--bart PATH`` ...) and a GPU are available; otherwise it is
reported as ``{"not_run": "<reason>"}``. The code path is the same for a tiny randomly initialised model of
each class, which is how the tests run it offline.
"""

from __future__ import annotations

import argparse
import json

from moe_summarization.data import load_documents
from moe_summarization.pretrained import BASELINES, run_baselines
from shared_utils.cli import Parser, data_source, nonnegative_int, output_file, write_output
from shared_utils.errors import cli_main
from shared_utils.runtime import pick_device


@cli_main
def main(argv: list[str] | None = None) -> None:
    from moe_summarization.inference import default_bertscore_model, summary_metrics

    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="hf:EdinburghNLP/xsum::test", type=data_source,
                   help="JSONL {document, summary} or hf:... (default: %(default)s)")
    p.add_argument("--limit", type=nonnegative_int, default=0, help="first N documents (0 = all)")
    p.add_argument("--out", type=output_file, required=True, help="JSON file for the scores")
    for name, b in BASELINES.items():
        p.add_argument(f"--{name}", default=None, help=f"hub id or local folder (default {b.model})")
    p.add_argument("--bertscore-model", default=None)
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    docs = load_documents(args.data, local_hint="pass --data PATH to a local JSONL file").records
    docs = docs[: args.limit or None]
    bert = args.bertscore_model or default_bertscore_model()
    results = run_baselines(docs, pick_device(args.device), {n: getattr(args, n) for n in BASELINES},
                            scorer=lambda preds, refs: summary_metrics(preds, refs, bert))
    write_output(args.out, json.dumps({"data": args.data, "bertscore_model": bert, "baselines": results}, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
