"""Texts -> token ids -> padded batches, and batched prediction: what training, evaluation and the benchmark
share."""

from __future__ import annotations

import torch

from quantization.config import LABELS
from shared_utils.metrics import accuracy, macro_f1


def encode(tok, texts: list[str], max_len: int) -> list[list[int]]:
    """Token ids per text, truncated to ``max_len`` (special tokens included where the model adds them)."""
    return tok(texts, truncation=True, max_length=max_len)["input_ids"]


def collate(ids: list[list[int]], pad_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Right-pad a list of id lists to the longest: input_ids and attention_mask, each (B, S)."""
    width = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, x in enumerate(ids):
        input_ids[i, : len(x)] = torch.tensor(x)
        mask[i, : len(x)] = 1
    return {"input_ids": input_ids.to(device), "attention_mask": mask.to(device)}


@torch.no_grad()
def predict(model, ids: list[list[int]], pad_id: int, device: torch.device, batch_size: int = 64) -> list[int]:
    """Argmax class per example; batches sorted by length so little padding is computed."""
    model.eval()
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    preds = [0] * len(ids)
    for start in range(0, len(order), batch_size):
        chunk = order[start: start + batch_size]
        logits = model(**collate([ids[i] for i in chunk], pad_id, device)).logits
        for i, p in zip(chunk, logits.argmax(-1).tolist()):
            preds[i] = p
    return preds


def evaluate(model, ids, labels, pad_id, device) -> dict[str, float]:
    preds = predict(model, ids, pad_id, device)
    return {"accuracy": accuracy(preds, labels), "macro_f1": macro_f1(preds, labels, len(LABELS))}
