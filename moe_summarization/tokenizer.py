"""Subword tokenizer (byte-level BPE) trained on the training text; ids 0-3 are ``<pad> <s> </s> <unk>``."""

from __future__ import annotations

import functools
from collections.abc import Iterable

from tokenizers import Tokenizer

from shared_utils.bpe import decode_ids, load_tokenizer, train_bpe

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]
PAD, BOS, EOS, UNK = range(4)


def train_tokenizer(texts: Iterable[str], vocab_size: int, lowercase: bool = False) -> Tokenizer:
    return train_bpe(texts, vocab_size, SPECIALS, lowercase)


decode = functools.partial(decode_ids, eos_id=EOS, num_specials=len(SPECIALS))  # ids -> text, up to EOS
__all__ = ["BOS", "EOS", "PAD", "SPECIALS", "UNK", "decode", "load_tokenizer", "train_tokenizer"]
