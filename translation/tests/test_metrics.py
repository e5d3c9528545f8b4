"""The translation metrics against hand computations: sacrebleu's BLEU, chrF++ and TER with their signatures."""

import math

import pytest

from shared_utils.errors import UserError
from translation.metrics import translation_scores


def test_bleu_matches_a_hand_computation():
    # clipped 1..4-gram matches: 5/6, 3/5, 2/4 ("the cat sat", "cat sat on"), 1/3 ("the cat sat on")
    scores = translation_scores(["the cat sat on the mat"], ["the cat sat on a mat"])
    precisions = [5 / 6, 3 / 5, 2 / 4, 1 / 3]
    expected = 100 * math.exp(sum(math.log(p) for p in precisions) / 4)  # equal lengths: brevity penalty 1
    assert scores["bleu"].score == pytest.approx(expected, abs=1e-6)
    assert scores["bleu"].signature.startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp")


def test_perfect_translation_scores_and_signatures():
    sentence = "Good morning, how are you today?"  # BLEU needs at least four tokens to have 4-grams
    scores = translation_scores([sentence], [sentence])
    assert scores["bleu"].score == pytest.approx(100.0)
    assert scores["chrf"].score == pytest.approx(100.0)
    assert scores["ter"].score == pytest.approx(0.0)
    assert "nw:2" in scores["chrf"].signature  # chrF++ = character n-grams + word bigrams


def test_lengths_must_match():
    with pytest.raises(UserError, match="2 hypotheses but 1 references"):
        translation_scores(["a", "b"], ["a"])
