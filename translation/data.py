"""Sentence pairs -> token ids. Long sentences are truncated to ``max_len`` tokens (counted and logged);
batching to a token budget is ``shared_utils.batching``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shared_utils.data import HUB_PREFIX, Collector, Loaded, check_text, file_lines, hub_rows

from .tokenizer import BOS, EOS


@dataclass
class Encoded:
    src: list[list[int]]  # source ids + EOS
    tgt: list[list[int]]  # BOS + target ids + EOS
    truncated: int  # sentences cut to max_len


def encode_pairs(tok, pairs, max_len: int) -> Encoded:
    """Tokenize pairs; each side keeps at most ``max_len`` tokens including its specials."""
    src_ids = tok.encode_batch([p.src for p in pairs])
    tgt_ids = tok.encode_batch([p.tgt for p in pairs])
    src, tgt, truncated = [], [], 0
    for s, t in zip(src_ids, tgt_ids):
        s_ids, t_ids = s.ids[: max_len - 1], t.ids[: max_len - 2]
        truncated += len(s.ids) > max_len - 1 or len(t.ids) > max_len - 2
        src.append(s_ids + [EOS])
        tgt.append([BOS] + t_ids + [EOS])
    return Encoded(src, tgt, truncated)


@dataclass(frozen=True)
class Pair:
    """One sentence pair: source (e.g. Finnish) and target (e.g. English)."""

    src: str
    tgt: str



# ---------------------------------------------------------------------------------------------- parallel
def load_parallel(
    source: str | Path,
    *,
    skip_bad: bool = False,
    src_key: str = "fi",
    tgt_key: str = "en",
    local_hint: str = "pass a local TSV file (source<TAB>target) instead",
) -> Loaded[Pair]:
    """Read sentence pairs from a TSV file or ``hf:...`` dataset.

    Hub rows are read as ``row["translation"][src_key]`` (OPUS-style) or ``row[src_key]`` (flat columns).
    """
    source = str(source)
    col: Collector[Pair] = Collector(source, skip_bad)
    if source.startswith(HUB_PREFIX):
        for i, row in enumerate(hub_rows(source, local_hint), start=1):
            fields = _pair_fields(row)
            src = check_text(col, i, src_key, fields.get(src_key))
            tgt = check_text(col, i, tgt_key, fields.get(tgt_key))
            if src is not None and tgt is not None:
                col.loaded.records.append(Pair(src, tgt))
        return col.loaded
    for number, text in file_lines(Path(source)):
        if not text.strip():
            col.empty()
            continue
        cells = text.split("\t")
        if len(cells) != 2:
            col.bad(number, f"expected 2 tab-separated columns, found {len(cells)}", kind="wrong column count")
            continue
        src = check_text(col, number, "source", cells[0])
        tgt = check_text(col, number, "target", cells[1])
        if src is not None and tgt is not None:
            col.loaded.records.append(Pair(src, tgt))
    return col.loaded


_TATOEBA_LANGS = {"eng": "en", "fin": "fi"}  # Tatoeba's ISO 639-3 codes, for the languages we default to


def _pair_fields(row: dict) -> dict:
    """A hub row's texts by language: OPUS/WMT rows nest them (``{"translation": {"en": .., "fi": ..}}``),
    Tatoeba-MT rows name each side's language (``sourceLang``/``sourceString``, ``targetlang``/``targetString``),
    other datasets have flat columns."""
    if "translation" in row:
        return row["translation"]
    if "sourceString" in row:
        lang = {side: str(row.get(key, "")) for side, key in (("src", "sourceLang"), ("tgt", "targetlang"))}
        return {_TATOEBA_LANGS.get(lang["src"], lang["src"]): row["sourceString"],
                _TATOEBA_LANGS.get(lang["tgt"], lang["tgt"]): row["targetString"]}
    return row
