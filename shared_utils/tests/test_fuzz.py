"""Property-based fuzzing of the tokenizer: any text survives byte-level BPE (each project fuzzes its own reader)."""

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared_utils.bpe import decode_ids, train_bpe
from shared_utils.testing import FUZZ_SETTINGS

FUZZ = settings(**FUZZ_SETTINGS)


@pytest.fixture(scope="module")
def tokenizer():
    corpus = ["Hyvää huomenta, maailma!", "Good morning, world.", "Kissa istuu talon katolla.", "1234 äöå ÄÖÅ"]
    return train_bpe(corpus * 5, 300, ["<pad>", "<s>", "</s>", "<unk>"])


@FUZZ
@given(text=st.text(st.characters(exclude_categories=("Cs",), exclude_characters="<"), max_size=60))
def test_tokenizer_round_trips_any_text_after_nfkc(tokenizer, text):
    """Byte-level BPE never loses a character: decoding gives back the NFKC form, stripped at the ends.
    ('<' is left out: a literal "</s>" in the text is read as the end-of-sentence token, by design.)"""
    ids = tokenizer.encode(text).ids
    assert decode_ids(tokenizer, ids, eos_id=2, num_specials=4) == unicodedata.normalize("NFKC", text).strip()
