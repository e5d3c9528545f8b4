"""The shared Finnish+English subword tokenizer: BPE from HF `tokenizers`, NFKC, trained on the training
corpus, serialised to one JSON string that every checkpoint carries (a checkpoint alone can translate)."""

from __future__ import annotations

import functools
from collections.abc import Iterable

from tokenizers import Tokenizer

from shared_utils.bpe import decode_ids, load_tokenizer, train_bpe

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]  # the tokenizer's first ids: every model and search reads them here
PAD, BOS, EOS, UNK = range(len(SPECIALS))


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """Byte-level BPE over both languages, so no character is ever unknown."""
    return train_bpe(texts, vocab_size, SPECIALS)


decode = functools.partial(decode_ids, eos_id=EOS, num_specials=len(SPECIALS))  # ids -> text, up to EOS
__all__ = ["SPECIALS", "decode", "load_tokenizer", "train_tokenizer"]
