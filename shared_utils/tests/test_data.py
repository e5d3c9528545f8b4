"""The shared reading pieces: hub sources, the one-sentence hub error, dedupe and the selection split."""

from dataclasses import dataclass

import pytest

from shared_utils.data import dedupe, hub_rows, parse_hub_source, selection_split
from shared_utils.errors import HubUnavailableError, UserError


@dataclass(frozen=True)
class Pair:
    src: str
    tgt: str


def test_hub_source_parsing():
    assert parse_hub_source("hf:ag_news") == ("ag_news", None, "train")
    assert parse_hub_source("hf:opus100:en-fi:validation") == ("opus100", "en-fi", "validation")
    assert parse_hub_source("hf:EdinburghNLP/xsum::test") == ("EdinburghNLP/xsum", None, "test")
    with pytest.raises(UserError, match="expected hf:<name>"):
        parse_hub_source("hf:")

def test_unreachable_hub_is_one_sentence_naming_the_local_alternative(monkeypatch):
    import shared_utils.hub as hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(hub, "hub_reachable", lambda: False)
    with pytest.raises(HubUnavailableError) as err:
        hub_rows("hf:fancyzhx/ag_news", "use --train ../shared/data/agnews/train.csv")
    message = str(err.value)
    assert "\n" not in message
    assert "dataset 'fancyzhx/ag_news'" in message and message.endswith("use --train ../shared/data/agnews/train.csv")

# --------------------------------------------------------------------------------------------- helpers
def test_dedupe_keeps_first_occurrence_in_order():
    pairs = [Pair("a", "1"), Pair("b", "2"), Pair("a", "3"), Pair("b", "2")]
    assert dedupe(pairs) == [Pair("a", "1"), Pair("b", "2"), Pair("a", "3")]
    assert dedupe(pairs, key=lambda p: p.src) == [Pair("a", "1"), Pair("b", "2")]


def test_selection_split_is_deterministic_stratified_and_unseen_in_training():
    records = [Pair(f"s{i % 60}", f"t{i}") for i in range(100)]  # 60 distinct sources; 40 repeat one
    key, source = (lambda p: p.src), (lambda p: "news" if p.src < "s2" else "other")
    train, select = selection_split(records, 10, seed=3, key=key, stratify=source)
    assert len(select) == 10 and len({p.src for p in select}) == 10
    assert not {p.src for p in select} & {p.src for p in train}  # a repeated source leaves train with it
    assert len(train) + sum(2 if int(p.src[1:]) < 40 else 1 for p in select) == 100
    news = [p for p in records if source(p) == "news"]  # s0, s1, s10-s19: 12 of 60 distinct -> 2 of 10
    assert sum(source(p) == "news" for p in select) == round(10 * len({p.src for p in news}) / 60)
    assert selection_split(records, 10, seed=3, key=key, stratify=source) == (train, select)
    assert selection_split(records, 10, seed=4, key=key, stratify=source)[1] != select
    assert train == [r for r in records if r in train] and select == [r for r in records if r in select]
    assert selection_split(records, 0) == (records, [])
    with pytest.raises(UserError, match="lower --select-size"):
        selection_split(records, 60, key=key)
