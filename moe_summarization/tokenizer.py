"""Subword tokenizer (byte-level BPE) trained on the training text; ids 0-3 are ``<pad> <s> </s> <unk>``."""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer

from shared_utils.bpe import train_bpe

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]
PAD, BOS, EOS, UNK = range(4)


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    return train_bpe(texts, vocab_size, SPECIALS)


def load_tokenizer(serialised: str) -> Tokenizer:
    return Tokenizer.from_str(serialised)


def decode(tok: Tokenizer, ids: list[int]) -> str:
    """Token ids -> text, stopping at the first EOS and skipping specials."""
    if EOS in ids:
        ids = ids[: ids.index(EOS)]
    return tok.decode([i for i in ids if i > UNK]).strip()
