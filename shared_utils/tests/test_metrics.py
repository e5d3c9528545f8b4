import math

import pytest

from shared_utils.errors import UserError
from shared_utils.metrics import (
    accuracy,
    bertscore_f1,
    macro_f1,
    minilm_model_dir,
    rouge_scores,
    split_sentences,
    translation_scores,
)


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


def test_rouge_matches_a_hand_computation():
    scores = rouge_scores(["the cat sat on the mat"], ["the cat was on the mat"])
    assert scores["rouge1"] == pytest.approx(100 * 5 / 6)  # the x2, cat, on, mat
    assert scores["rouge2"] == pytest.approx(100 * 3 / 5)  # the cat, on the, the mat
    assert scores["rougeL"] == pytest.approx(100 * 5 / 6)  # LCS: the cat on the mat
    assert scores["rougeLsum"] == pytest.approx(100 * 5 / 6)


def test_rouge_uses_stemming():
    assert rouge_scores(["cats running"], ["cat runs"])["rouge1"] == pytest.approx(100.0)


def test_sentence_splitter_for_rouge_lsum():
    assert split_sentences("He left. She stayed! Why? 3 more.") == ["He left.", "She stayed!", "Why?", "3 more."]


def test_bertscore_runs_offline_with_the_minilm_package():
    assert (minilm_model_dir() / "config.json").is_file()
    preds = ["The cat sat on the mat.", "Stocks fell sharply on Monday."]
    refs = ["The cat sat on the mat.", "A cat was sleeping on a rug."]
    same = bertscore_f1(preds[:1], refs[:1], model="minilm")
    mixed = bertscore_f1(preds, refs, model="minilm")
    assert same == pytest.approx(100.0, abs=1e-3)
    assert 0.0 < mixed < same
    # an empty summary (an untrained model's) scores 0 and the others are unchanged, instead of a crash
    assert bertscore_f1(["", preds[0]], ["A cat.", refs[0]], model="minilm") == pytest.approx(same / 2, abs=1e-3)
    assert bertscore_f1([""], ["A cat."], model="minilm") == 0.0


def test_accuracy_and_macro_f1_known_values():
    preds, labels = [0, 1, 1, 2], [0, 1, 2, 2]
    assert accuracy(preds, labels) == pytest.approx(0.75)
    # per-class F1: 1, 2/3, 2/3
    assert macro_f1(preds, labels, num_labels=3) == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    # an absent class counts as 0, as scikit-learn's zero_division=0 does
    assert macro_f1([0, 0], [0, 0], num_labels=2) == pytest.approx(0.5)
    with pytest.raises(UserError):
        accuracy([1], [1, 2])
