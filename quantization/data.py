"""Texts -> token ids -> padded batches, and batched prediction: what training, evaluation and the benchmark
share."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import torch

from quantization.config import LABELS
from quantization.metrics import accuracy, macro_f1
from shared_utils.data import HUB_PREFIX, Collector, Loaded, check_text, file_lines, hub_rows
from shared_utils.errors import DataError


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


@dataclass(frozen=True)
class Example:
    """One labelled text (class id in ``range(num_labels)``)."""

    label: int
    text: str



# ---------------------------------------------------------------------------------------------- labelled
def load_labelled(
    source: str | Path,
    *,
    num_labels: int,
    skip_bad: bool = False,
    local_hint: str = "pass a local CSV file (header label,text) instead",
) -> Loaded[Example]:
    """Read labelled texts from a ``label,text`` CSV (header required) or ``hf:...`` dataset."""
    source = str(source)
    col: Collector[Example] = Collector(source, skip_bad)

    def add(line: int, label: object, text: object) -> None:
        try:
            value = int(str(label).strip())
        except ValueError:
            value = None
        if value is None or not 0 <= value < num_labels:
            col.bad(line, f"bad label {label!r}: expected an integer in 0..{num_labels - 1}", kind="bad label")
            return
        clean = check_text(col, line, "text", text)
        if clean is not None:
            col.loaded.records.append(Example(value, clean))

    if source.startswith(HUB_PREFIX):
        for i, row in enumerate(hub_rows(source, local_hint), start=1):
            add(i, row.get("label"), row.get("text"))
        return col.loaded

    numbered = list(file_lines(Path(source)))
    if not numbered:
        raise DataError(source, 1, "empty file (expected the header 'label,text')")
    try:
        header = [c.strip() for c in next(csv.reader([numbered[0][1]]), [])]
    except csv.Error:
        header = []
    if header != ["label", "text"]:
        raise DataError(source, 1, "expected the header 'label,text'")
    reader = csv.reader(text + "\n" for _, text in numbered[1:])
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:  # a NUL byte, a field past the size limit, a quote left open at the end
            col.bad(reader.line_num + 1, f"unreadable CSV ({exc})", kind="unreadable CSV")
            continue
        line = reader.line_num + 1  # +1 for the header; line_num counts the physical lines consumed
        if not cells or all(not c.strip() for c in cells):
            col.empty()
            continue
        if len(cells) != 2:
            col.bad(line, f"expected 2 columns (label,text), found {len(cells)}", kind="wrong column count")
            continue
        add(line, cells[0], cells[1])
    return col.loaded
