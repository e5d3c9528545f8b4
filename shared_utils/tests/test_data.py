import json

import pytest

from shared_utils.data import (
    Doc,
    Example,
    Pair,
    dedupe,
    load_documents,
    load_labelled,
    load_parallel,
    parse_hub_source,
    selection_split,
)
from shared_utils.errors import DataError, HubUnavailableError, UserError


# ------------------------------------------------------------------------------------------ parallel TSV
def test_parallel_reads_pairs_and_counts_blank_lines(write):
    path = write("p.tsv", "Hyvää huomenta\tGood morning\n\n  \nKiitos\tThanks\n")
    loaded = load_parallel(path)
    assert loaded.records == [Pair("Hyvää huomenta", "Good morning"), Pair("Kiitos", "Thanks")]
    assert loaded.skipped == {"empty line": 2}
    assert "skipped 2" in loaded.summary()


@pytest.mark.parametrize(
    ("content", "line", "reason"),
    [
        ("a\tb\nonly one column\n", 2, "expected 2 tab-separated columns, found 1"),
        ("a\tb\nx\ty\tz\n", 2, "found 3"),
        ("a\tb\nc\td\n\t english\n", 3, "empty field 'source'"),
        ("a\t   \n", 1, "empty field 'target'"),
    ],
)
def test_parallel_bad_rows_name_file_and_line(write, content, line, reason):
    path = write("bad.tsv", content)
    with pytest.raises(DataError) as err:
        load_parallel(path)
    assert str(err.value).startswith(f"{path}:{line}: ")
    assert reason in str(err.value)
    assert err.value.line == line


def test_parallel_undecodable_bytes_name_the_line(write):
    path = write("latin1.tsv", b"ok\tok\n" + "hyv\xe4\tgood\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1\.tsv:2: invalid UTF-8 at byte 3"):
        load_parallel(path)


def test_parallel_skip_bad_counts_each_reason(write):
    path = write("mixed.tsv", "a\tb\nbroken\n\tx\nc\td\ne\tf\tg\n")
    loaded = load_parallel(path, skip_bad=True)
    assert [p.src for p in loaded] == ["a", "c"]
    assert loaded.skipped == {"wrong column count": 2, "empty source": 1}


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="nope.tsv: file not found"):
        load_parallel(tmp_path / "nope.tsv")
    with pytest.raises(DataError, match="not a regular file"):
        load_parallel(tmp_path)


# ------------------------------------------------------------------------------------------ labelled CSV
def test_labelled_reads_quoted_commas_and_multiline_fields(write):
    path = write("l.csv", 'label,text\n0,"World, news"\n\n3,"two\nlines"\n1,Sports\n')
    loaded = load_labelled(path, num_labels=4)
    assert loaded.records == [Example(0, "World, news"), Example(3, "two\nlines"), Example(1, "Sports")]
    assert loaded.skipped == {"empty line": 1}


@pytest.mark.parametrize(
    ("content", "line", "reason"),
    [
        ("text,label\n0,a\n", 1, "expected the header 'label,text'"),
        ("", 1, "expected the header"),
        ("label,text\n0,a\n7,b\n", 3, "bad label '7': expected an integer in 0..3"),
        ("label,text\n0,a\nsports,b\n", 3, "bad label 'sports'"),
        ("label,text\n0,a\n1,b,c\n", 3, "expected 2 columns (label,text), found 3"),
        ("label,text\n0,a\n1,  \n", 3, "empty field 'text'"),
        ('label,text\n0,"multi\nline"\n2,\n', 4, "empty field 'text'"),
    ],
)
def test_labelled_bad_rows_name_file_and_line(write, content, line, reason):
    path = write("bad.csv", content)
    with pytest.raises(DataError) as err:
        load_labelled(path, num_labels=4)
    assert str(err.value).startswith(f"{path}:{line}: ")
    assert reason in str(err.value)


def test_labelled_skip_bad(write):
    path = write("bad.csv", "label,text\n0,a\n9,b\n1,c\nx\n")
    loaded = load_labelled(path, num_labels=4, skip_bad=True)
    assert [e.text for e in loaded] == ["a", "c"]
    assert loaded.skipped == {"bad label": 1, "wrong column count": 1}


# --------------------------------------------------------------------------------------- documents JSONL
def test_documents_read_optional_fields(write):
    rows = [
        {"id": "7", "source": "bbc", "document": "Long text.", "summary": "Short."},
        {"document": "D", "summary": "S"},
    ]
    path = write("d.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n\n")
    loaded = load_documents(path)
    assert loaded.records == [Doc("Long text.", "Short.", "bbc", "7"), Doc("D", "S")]
    assert loaded.skipped == {"empty line": 1}


@pytest.mark.parametrize(
    ("content", "line", "reason"),
    [
        ('{"document": "a", "summary": "b"}\n{"document": "a", "summary": }\n', 2, "invalid JSON"),
        ('{"document": "a", "summary": "b"}\n[1, 2]\n', 2, "expected a JSON object, got list"),
        ('{"document": "a"}\n', 1, "field 'summary' must be a string, got NoneType"),
        ('{"document": " ", "summary": "b"}\n', 1, "empty field 'document'"),
        ('{"document": 3, "summary": "b"}\n', 1, "field 'document' must be a string, got int"),
    ],
)
def test_documents_bad_rows_name_file_and_line(write, content, line, reason):
    path = write("bad.jsonl", content)
    with pytest.raises(DataError) as err:
        load_documents(path)
    assert str(err.value).startswith(f"{path}:{line}: ")
    assert reason in str(err.value)


def test_documents_skip_bad(write):
    path = write("bad.jsonl", '{"document": "a", "summary": "b"}\nnot json\n{"document": "c", "summary": ""}\n')
    loaded = load_documents(path, skip_bad=True)
    assert len(loaded) == 1
    assert loaded.skipped == {"invalid JSON": 1, "empty summary": 1}


# ------------------------------------------------------------------------------------------------- hub
def test_hub_source_parsing():
    assert parse_hub_source("hf:ag_news") == ("ag_news", None, "train")
    assert parse_hub_source("hf:opus100:en-fi:validation") == ("opus100", "en-fi", "validation")
    assert parse_hub_source("hf:EdinburghNLP/xsum::test") == ("EdinburghNLP/xsum", None, "test")
    with pytest.raises(UserError, match="expected hf:<name>"):
        parse_hub_source("hf:")


def test_hub_rows_are_mapped_and_validated(monkeypatch):
    import shared_utils.data as data

    rows = [{"translation": {"fi": "Kissa", "en": "Cat"}}, {"translation": {"fi": "", "en": "x"}}]
    monkeypatch.setattr(data, "load_hub_dataset", lambda *a, **k: rows)
    loaded = load_parallel("hf:opus100:en-fi", skip_bad=True)
    assert loaded.records == [Pair("Kissa", "Cat")]
    assert loaded.skipped == {"empty fi": 1}


def test_unreachable_hub_is_one_sentence_naming_the_local_alternative(monkeypatch):
    import shared_utils.hub as hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(hub, "hub_reachable", lambda: False)
    with pytest.raises(HubUnavailableError) as err:
        load_labelled("hf:ag_news", num_labels=4, local_hint="use --train ../shared/data/agnews/train.csv")
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


# ------------------------------------------------------------------------------------------- real files
def test_real_shared_files_load_cleanly(shared_data):
    tatoeba = load_parallel(shared_data / "translation" / "dev.tatoeba.fi-en.tsv")
    assert len(tatoeba) == 2000 and not tatoeba.skipped
    agnews = load_labelled(shared_data / "agnews" / "dev.csv", num_labels=4)
    assert len(agnews) == 2000 and {e.label for e in agnews} == {0, 1, 2, 3}
    xsum = load_documents(shared_data / "xsum" / "test-sample.jsonl")
    assert len(xsum) == 800
