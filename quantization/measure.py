"""One trained checkpoint under one precision, measured: accuracy and macro-F1 on the dev set, bytes, peak
memory and Timer-based latency on the chosen device. ``eval.py`` is its command line; ``bench.py`` runs that
once per method and sweep, each in a fresh process."""

from __future__ import annotations

import gc
import json
import random
from pathlib import Path

import torch

from quantization.config import LABELS
from quantization.data import collate, encode, load_labelled, predict
from quantization.metrics import accuracy, macro_f1
from quantization.model import classifier_from_checkpoint
from quantization.quantize import (
    Method,
    get_method,
    load_quantized,
    quantize_model,
    quantized_bytes,
    save_quantized,
    target_layers,
)
from shared_utils.checkpoint import load_best
from shared_utils.errors import UserError
from shared_utils.runtime import device_info, peak_memory, pick_device, reset_peak_memory, seed_everything
from shared_utils.timing import interleaved

CALIB_BATCHES = 8  # W8A8's calibration batches of 32 training texts, unless told otherwise
DATA_HINT = ("use --dev ../shared/data/agnews/dev.csv (and --train ../shared/data/agnews/train.csv for w8a8; "
             "make quant-bench QUANT_DATA=local)")


def fixed_length_batch(tok, texts: list[str], batch: int, seq_len: int, device) -> dict[str, torch.Tensor]:
    """Real texts padded/truncated to exactly ``seq_len`` tokens, for latency at a known shape."""
    enc = tok(texts[:batch], padding="max_length", truncation=True, max_length=seq_len, return_tensors="pt")
    return {"input_ids": enc["input_ids"].to(device), "attention_mask": enc["attention_mask"].to(device)}


def calibration_batches(tok, train: str, *, batches: int, seed: int, max_len: int, device) -> list[dict]:
    """``batches`` batches of 32 training texts drawn with ``seed``: one calibration subset of W8A8."""
    texts = [e.text for e in load_labelled(train, num_labels=len(LABELS), local_hint=DATA_HINT).require("--train")]
    chosen = random.Random(seed).sample(texts, min(len(texts), batches * 32))
    ids = encode(tok, chosen, max_len)
    return [collate(ids[i: i + 32], tok.pad_token_id, device) for i in range(0, len(ids), 32)]


def run_method(checkpoint: str, spec: Method, dev: str, train: str | None, *, limit: int = 0,
               calib_batches: int = CALIB_BATCHES, calib_seed: int = 0, latency_blocks: int = 3, device: str = "auto",
               accuracy_too: bool = True, latency: bool = True, save_dir: Path | None = None,
               load_dir: Path | None = None) -> dict:
    """Load the checkpoint, quantize it with ``spec`` on ``device`` and measure it.

    Latency is the whole model at batch 1 and 32 x ``min(128, max_len)`` tokens: ``latency_blocks``
    ``Timer.blocked_autorange`` blocks each (CUDA synchronised), after a warm-up call. ``accuracy_too=False``
    skips the dev set (the benchmark's later latency sweeps), ``latency=False`` the timing. ``save_dir`` keeps
    the quantized model (scratch methods: ``quantize.save_quantized``); ``load_dir`` rebuilds one from such a
    folder instead of quantizing (its method is the one saved), so a calibration can be reused exactly."""
    seed_everything(0)
    target = pick_device(device)
    reset_peak_memory(target)
    ckpt = load_best(checkpoint)
    model, tok = classifier_from_checkpoint(ckpt)
    model.to(target)
    dev_set = load_labelled(dev, num_labels=len(LABELS), local_hint=DATA_HINT).require("--dev")
    rows = dev_set.records[:limit] if limit else dev_set.records
    texts, labels = [e.text for e in rows], [e.label for e in rows]
    max_len = ckpt.config["max_len"]

    names = list(target_layers(model))
    fp32_layer_bytes, fp32_model_bytes = quantized_bytes(model, names)
    if load_dir is not None:
        model = load_quantized(model, load_dir)
        spec = get_method(json.loads((Path(load_dir) / "quantization.json").read_text())["method"])
    else:
        calibration = None
        if spec.calibrated:
            if train is None:
                raise UserError(f"--method {spec.name} needs --train (calibration batches from the training set)")
            calibration = calibration_batches(tok, train, batches=calib_batches, seed=calib_seed, max_len=max_len,
                                              device=target)
        model = quantize_model(model, spec, calibration=calibration)
    if save_dir is not None:
        save_quantized(model, spec, save_dir)
    gc.collect()
    layer_bytes, model_bytes = quantized_bytes(model, names)
    result = {"method": spec.name, "device": device_info(target)["label"], "calib_seed": calib_seed,
              "quantized_layer_bytes": layer_bytes, "fp32_layer_bytes": fp32_layer_bytes,
              "quantized_layer_bytes_ratio": layer_bytes / fp32_layer_bytes, "model_bytes": model_bytes,
              "fp32_model_bytes": fp32_model_bytes, "dev_rows": len(rows)}
    if accuracy_too:
        preds = predict(model, encode(tok, texts, max_len), tok.pad_token_id, target)
        result.update(accuracy=accuracy(preds, labels), macro_f1=macro_f1(preds, labels, len(LABELS)),
                      predictions=preds)
    result["latency_seq_len"] = min(128, max_len)  # 128 unless the model was trained shorter
    with torch.no_grad():
        for batch in (1, 32) if latency else ():
            inputs = fixed_length_batch(tok, texts, batch, result["latency_seq_len"], target)
            timing = interleaved({"model": lambda inputs=inputs: model(**inputs)}, repeats=latency_blocks)["model"]
            result[f"latency_ms_b{batch}"] = timing.as_dict()
    return {**result, **peak_memory(target)}
