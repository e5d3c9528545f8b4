"""Reading labelled texts: ``label,text`` CSV with quoting, bad rows named by file and line."""

import csv
import io

import pytest
from datasets import ClassLabel, Dataset, Features, Value
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quantization.data import Example, load_labelled
from shared_utils.errors import DataError
from shared_utils.testing import FUZZ_SETTINGS, records_or_user_error, write_hub_repo


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


def test_the_real_dev_set_loads_cleanly(shared_data):
    agnews = load_labelled(shared_data / "agnews" / "dev.csv", num_labels=4)
    assert len(agnews) == 2000 and {e.label for e in agnews} == {0, 1, 2, 3}


# -- fuzzing and the hub's datasets
# text as users' files hold it: any character but surrogates, with the separators each format cares about
TEXT = st.text(st.characters(exclude_categories=("Cs",)) | st.sampled_from("\t,\"\n\r\\{}[]:"), max_size=40)
FUZZ = settings(**FUZZ_SETTINGS, suppress_health_check=[HealthCheck.function_scoped_fixture])
AG_LABELS = ["World", "Sports", "Business", "Sci/Tech"]


@FUZZ
@given(data=st.binary(max_size=300))
def test_random_bytes_give_records_or_a_user_error(tmp_path, data):
    path = tmp_path / "input"
    path.write_bytes(data)
    records_or_user_error(lambda p: load_labelled(p, num_labels=4), path)


@FUZZ
@given(rows=st.lists(st.tuples(st.one_of(st.integers(-2, 6).map(str), TEXT), TEXT), max_size=8))
def test_random_csv_rows(tmp_path, rows):
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["label", "text"])
    writer.writerows(rows)
    path = tmp_path / "labelled.csv"
    path.write_text(buffer.getvalue(), encoding="utf-8", newline="")
    for example in records_or_user_error(lambda p: load_labelled(p, num_labels=4), path) or []:
        assert 0 <= example.label < 4 and example.text


def test_ag_news_schema_labels_and_splits(tmp_path):
    features = Features({"text": Value("string"), "label": ClassLabel(names=AG_LABELS)})
    repo = write_hub_repo(tmp_path, {
        "train": Dataset.from_dict({"text": ["Stocks fell.", "Team wins."], "label": [2, 1]}, features=features),
        "test": Dataset.from_dict({"text": ["New chip.", "Talks in Geneva.", " "], "label": [3, 0, 0]},
                                  features=features),
    })
    test = load_labelled(f"hf:{repo}::test", num_labels=4, skip_bad=True)
    assert [(e.label, e.text) for e in test] == [(3, "New chip."), (0, "Talks in Geneva.")]
    assert test.skipped == {"empty text": 1}
    assert [e.label for e in load_labelled(f"hf:{repo}::train", num_labels=4)] == [2, 1]
