"""Documents and summaries -> token ids, plus the corpus token counts the hash router balances on.

Documents longer than ``max_source_len`` tokens are truncated (counted and logged); summaries are cut to
``max_target_len``. Batching to a token budget is ``shared_utils.batching``.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from shared_utils.data import HUB_PREFIX, Collector, Loaded, check_text, file_lines, hub_rows

from .tokenizer import BOS, EOS


@dataclass
class Encoded:
    src: list[list[int]]  # document ids + EOS
    tgt: list[list[int]]  # BOS + summary ids + EOS
    truncated: int  # documents cut to max_source_len


def encode_documents(tok, docs, max_source_len: int, max_target_len: int) -> Encoded:
    src_ids = tok.encode_batch([d.document for d in docs])
    tgt_ids = tok.encode_batch([d.summary for d in docs])
    src, tgt, truncated = [], [], 0
    for s, t in zip(src_ids, tgt_ids):
        truncated += len(s.ids) > max_source_len - 1
        src.append(s.ids[: max_source_len - 1] + [EOS])
        tgt.append([BOS] + t.ids[: max_target_len - 2] + [EOS])
    return Encoded(src, tgt, truncated)


def token_counts(data: Encoded, vocab_size: int) -> list[int]:
    """How often each id occurs on both sides: what frequency-balanced hash routing spreads evenly."""
    counts = Counter(i for rows in (data.src, data.tgt) for row in rows for i in row)
    return [counts.get(i, 0) for i in range(vocab_size)]


@dataclass(frozen=True)
class Doc:
    """One document/summary pair; ``source`` is the sub-corpus name when the file has one."""

    document: str
    summary: str
    source: str = ""
    id: str = ""



# --------------------------------------------------------------------------------------------- documents
def load_documents(
    source: str | Path,
    *,
    skip_bad: bool = False,
    document_key: str = "document",
    summary_key: str = "summary",
    local_hint: str = "pass a local JSONL file (keys document, summary) instead",
) -> Loaded[Doc]:
    """Read document/summary pairs from JSONL or ``hf:...``; optional ``source`` and ``id`` keys are kept."""
    source = str(source)
    col: Collector[Doc] = Collector(source, skip_bad)

    def add(line: int, row: dict) -> None:
        doc = check_text(col, line, document_key, row.get(document_key))
        if doc is None:
            return
        summ = check_text(col, line, summary_key, row.get(summary_key))
        if summ is not None:
            col.loaded.records.append(Doc(doc, summ, str(row.get("source", "")), str(row.get("id", ""))))

    if source.startswith(HUB_PREFIX):
        for i, row in enumerate(hub_rows(source, local_hint), start=1):
            add(i, row)
        return col.loaded
    for number, text in file_lines(Path(source)):
        if not text.strip():
            col.empty()
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as exc:
            col.bad(number, f"invalid JSON ({exc.msg} at column {exc.colno})", kind="invalid JSON")
            continue
        except RecursionError:
            col.bad(number, "invalid JSON (nested too deeply)", kind="invalid JSON")
            continue
        if not isinstance(row, dict):
            col.bad(number, f"expected a JSON object, got {type(row).__name__}", kind="not an object")
            continue
        add(number, row)
    return col.loaded
