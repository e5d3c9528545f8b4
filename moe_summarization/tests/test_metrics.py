"""The summarization metrics against hand computations: ROUGE with stemming, the sentence splitter behind
ROUGE-Lsum, and BERTScore offline with the MiniLM package."""

import pytest

from moe_summarization.metrics import bertscore_f1, rouge_scores, split_sentences
from shared_utils.hub import minilm_model_dir


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
