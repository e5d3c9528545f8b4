"""One byte-level BPE trainer (HF `tokenizers`) for every project that trains its own subword vocabulary.

NFKC normalisation (optionally lowercasing), byte-level pre-tokenisation (no character is ever unknown), the
given special tokens first, so their ids are 0, 1, ... in order.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers


def train_bpe(texts: Iterable[str], vocab_size: int, specials: list[str], lowercase: bool = False) -> Tokenizer:
    """Train on ``texts``; ``specials[i]`` gets id ``i``."""
    tok = Tokenizer(models.BPE(unk_token="<unk>" if "<unk>" in specials else None))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()]) if lowercase \
        else normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    return tok


def load_tokenizer(serialised: str) -> Tokenizer:
    """A tokenizer from the JSON string a checkpoint carries."""
    return Tokenizer.from_str(serialised)


def decode_ids(tok: Tokenizer, ids: list[int], *, eos_id: int, num_specials: int) -> str:
    """Ids -> text, stopping at the first ``eos_id`` and skipping the special tokens (ids < ``num_specials``)."""
    if eos_id in ids:
        ids = ids[: ids.index(eos_id)]
    return tok.decode([i for i in ids if i >= num_specials]).strip()
