"""Reading documents: JSONL rows with optional fields, bad rows named by file and line."""

import json

import pytest
from datasets import Dataset
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moe_summarization.data import Doc, load_documents
from shared_utils.errors import DataError
from shared_utils.testing import FUZZ_SETTINGS, records_or_user_error, write_hub_repo


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


def test_the_real_sets_load_cleanly(shared_data):
    assert len(load_documents(shared_data / "xsum" / "test-sample.jsonl")) == 800
    train = load_documents(shared_data / "xsum-style" / "train.jsonl")
    assert len(train) == 7685 and {d.source for d in train} == {"bbc", "bbcsport", "reuters"}
    assert len(load_documents(shared_data / "xsum-style" / "dev.jsonl")) == 681


# -- fuzzing and the hub's datasets
# text as users' files hold it: any character but surrogates, with the separators each format cares about
TEXT = st.text(st.characters(exclude_categories=("Cs",)) | st.sampled_from("\t,\"\n\r\\{}[]:"), max_size=40)
FUZZ = settings(**FUZZ_SETTINGS, suppress_health_check=[HealthCheck.function_scoped_fixture])
JSON_VALUE = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
                          lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
                          max_leaves=6)


@FUZZ
@given(data=st.binary(max_size=300))
def test_random_bytes_give_records_or_a_user_error(tmp_path, data):
    path = tmp_path / "input"
    path.write_bytes(data)
    records_or_user_error(load_documents, path)


@FUZZ
@given(rows=st.lists(st.dictionaries(st.sampled_from(["document", "summary", "id", "source", "x"]), JSON_VALUE)
                     | JSON_VALUE, max_size=6))
def test_random_jsonl_rows(tmp_path, rows):
    path = tmp_path / "docs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    for doc in records_or_user_error(load_documents, path) or []:
        assert doc.document and doc.summary


def test_xsum_schema(tmp_path):
    rows = {"document": ["The storm hit the coast overnight.\nPower was cut."], "summary": ["A storm cut power."],
            "id": ["3801"]}
    repo = write_hub_repo(tmp_path, {"validation": Dataset.from_dict(rows)})
    docs = load_documents(f"hf:{repo}::validation")
    assert [(d.id, d.summary) for d in docs] == [("3801", "A storm cut power.")]
    assert docs[0].document.startswith("The storm")
