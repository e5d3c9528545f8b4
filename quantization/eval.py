"""Evaluate one trained checkpoint under one precision: accuracy, macro-F1, bytes, memory and latency.

    python quantization/eval.py --checkpoint runs/minilm --method int8_weight_per_channel \\
        --dev ../shared/data/agnews/dev.csv --train ../shared/data/agnews/train.csv

``--train`` supplies the calibration batches W8A8 needs. ``--json`` writes every measurement (and the
predictions) to a file; ``bench.py`` runs this once per method, each in a fresh process, so peak memory
belongs to that method alone.
"""

from __future__ import annotations

import argparse
import gc
import json
from pathlib import Path

import torch

from quantization.config import LABELS
from quantization.model import classifier_from_checkpoint
from quantization.quantize import METHODS, get_method, quantize_model, quantized_layer_bytes, state_bytes, target_layers
from quantization.train import collate, encode, predict
from shared_utils.checkpoint import load_best
from shared_utils.cli import Parser, nonnegative_int, positive_int
from shared_utils.data import load_labelled
from shared_utils.errors import UserError, cli_main
from shared_utils.metrics import accuracy, macro_f1
from shared_utils.runtime import current_rss_mb, measure_latency, peak_rss_mb, pick_device, seed_everything

DATA_HINT = ("use --dev ../shared/data/agnews/dev.csv (and --train ../shared/data/agnews/train.csv for w8a8; "
             "make quant-bench QUANT_DATA=local)")


def fixed_length_batch(tok, texts: list[str], batch: int, seq_len: int, device) -> dict[str, torch.Tensor]:
    """Real texts padded/truncated to exactly ``seq_len`` tokens, for latency at a known shape."""
    enc = tok(texts[:batch], padding="max_length", truncation=True, max_length=seq_len, return_tensors="pt")
    return {"input_ids": enc["input_ids"].to(device), "attention_mask": enc["attention_mask"].to(device)}


def run_method(checkpoint: str, method: str, dev: str, train: str | None, *, limit: int = 0,
               calib_batches: int = 8, latency_iters: int = 10, device: str = "cpu") -> dict:
    seed_everything(0)
    spec = get_method(method)
    dev_dev = pick_device(device)
    ckpt = load_best(checkpoint)
    model, tok = classifier_from_checkpoint(ckpt)
    model.to(dev_dev)
    dev_set = load_labelled(dev, num_labels=len(LABELS), local_hint=DATA_HINT).require("--dev")
    rows = dev_set.records[:limit] if limit else dev_set.records
    texts, labels = [e.text for e in rows], [e.label for e in rows]
    max_len = ckpt.config["max_len"]
    dev_ids = encode(tok, texts, max_len)

    names = list(target_layers(model))
    fp32_layer_bytes = quantized_layer_bytes(model, names)
    fp32_model_bytes = state_bytes(model)
    calibration = None
    if spec.kind == "w8a8":
        if train is None:
            raise UserError("--method w8a8 needs --train (calibration batches from the training set)")
        train_texts = [e.text for e in load_labelled(train, num_labels=len(LABELS),
                                                     local_hint=DATA_HINT).require("--train")]
        calib_ids = encode(tok, train_texts[: calib_batches * 32], max_len)
        calibration = [collate(calib_ids[i: i + 32], tok.pad_token_id, dev_dev)
                       for i in range(0, len(calib_ids), 32)]
    model = quantize_model(model, method, calibration=calibration)
    gc.collect()
    layer_bytes = quantized_layer_bytes(model, names)

    preds = predict(model, dev_ids, tok.pad_token_id, dev_dev)
    quality = {"accuracy": accuracy(preds, labels), "macro_f1": macro_f1(preds, labels, len(LABELS))}
    latency = {"latency_seq_len": min(128, max_len)}  # 128 unless the model was trained shorter
    with torch.no_grad():
        for batch in (1, 32):
            inputs = fixed_length_batch(tok, texts, batch, latency["latency_seq_len"], dev_dev)
            lat = measure_latency(lambda inputs=inputs: model(**inputs), warmup=2,
                                  iters=latency_iters * (3 if batch == 1 else 1), device=dev_dev)
            latency[f"latency_ms_b{batch}_p50"] = lat.p50_ms
            latency[f"latency_ms_b{batch}_p90"] = lat.p90_ms
    return {
        "method": method,
        **quality,
        "quantized_layer_bytes": layer_bytes,
        "fp32_layer_bytes": fp32_layer_bytes,
        "quantized_layer_bytes_ratio": layer_bytes / fp32_layer_bytes,
        "model_bytes": state_bytes(model),
        "fp32_model_bytes": fp32_model_bytes,
        "rss_mb_after_quantization": current_rss_mb(),
        "peak_rss_mb": peak_rss_mb(),
        **latency,
        "throughput_examples_per_s_b32": 32 / latency["latency_ms_b32_p50"] * 1e3,
        "dev_rows": len(rows),
        "predictions": preds,
    }


@cli_main
def main(argv: list[str] | None = None) -> None:
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="run folder (uses its best checkpoint) or checkpoint folder")
    p.add_argument("--method", default="fp32", help=f"one of: {', '.join(METHODS)}")
    p.add_argument("--dev", required=True, help="CSV label,text (or hf:ag_news::test)")
    p.add_argument("--train", default=None, help="CSV for W8A8 calibration")
    p.add_argument("--limit", type=nonnegative_int, default=0, help="evaluate the first N dev rows only (0 = all)")
    p.add_argument("--calib-batches", type=positive_int, default=8)
    p.add_argument("--latency-iters", type=positive_int, default=10)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", type=Path, default=None, help="write all measurements here")
    args = p.parse_args(argv)
    get_method(args.method)
    result = run_method(args.checkpoint, args.method, args.dev, args.train, limit=args.limit,
                        calib_batches=args.calib_batches, latency_iters=args.latency_iters, device=args.device)
    if args.json:
        args.json.write_text(json.dumps(result), encoding="utf-8")
    shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in result.items() if k != "predictions"}
    print(json.dumps(shown))


if __name__ == "__main__":
    main()
