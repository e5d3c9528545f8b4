"""Reading sentence pairs: TSV rows, bad rows named by file and line, hub rows mapped by language."""

import pytest
from datasets import Dataset
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared_utils.errors import DataError
from shared_utils.testing import FUZZ_SETTINGS, records_or_user_error, write_hub_repo
from translation.data import Pair, load_parallel


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


def test_hub_rows_are_mapped_and_validated(monkeypatch):
    import shared_utils.data as data

    rows = [{"translation": {"fi": "Kissa", "en": "Cat"}}, {"translation": {"fi": "", "en": "x"}}]
    monkeypatch.setattr(data, "load_hub_dataset", lambda *a, **k: rows)
    loaded = load_parallel("hf:opus100:en-fi", skip_bad=True)
    assert loaded.records == [Pair("Kissa", "Cat")]
    assert loaded.skipped == {"empty fi": 1}


def test_the_real_dev_set_loads_cleanly(shared_data):
    tatoeba = load_parallel(shared_data / "translation" / "dev.tatoeba.fi-en.tsv")
    assert len(tatoeba) == 2000 and not tatoeba.skipped


# -- fuzzing and the hub's datasets
# text as users' files hold it: any character but surrogates, with the separators each format cares about
TEXT = st.text(st.characters(exclude_categories=("Cs",)) | st.sampled_from("\t,\"\n\r\\{}[]:"), max_size=40)
FUZZ = settings(**FUZZ_SETTINGS, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(data=st.binary(max_size=300))
def test_random_bytes_give_records_or_a_user_error(tmp_path, data):
    path = tmp_path / "input"
    path.write_bytes(data)
    records_or_user_error(load_parallel, path)


@FUZZ
@given(rows=st.lists(st.tuples(TEXT, TEXT), max_size=8))
def test_random_tsv_rows(tmp_path, rows):
    path = tmp_path / "pairs.tsv"
    path.write_text("\n".join(f"{a}\t{b}" for a, b in rows), encoding="utf-8", newline="")
    records = records_or_user_error(load_parallel, path)
    for pair in records or []:
        assert pair.src == pair.src.strip() and pair.src and pair.tgt and "\t" not in pair.src + pair.tgt


def test_opus100_schema_with_its_named_config(tmp_path):
    rows = {"translation": [{"en": "Good morning.", "fi": "Hyvää huomenta."}, {"en": "A cat.", "fi": "Kissa."}]}
    repo = write_hub_repo(tmp_path, {"test": Dataset.from_dict(rows), "validation": Dataset.from_dict(rows)}, "en-fi")
    pairs = load_parallel(f"hf:{repo}:en-fi:test")
    assert [(p.src, p.tgt) for p in pairs] == [("Hyvää huomenta.", "Good morning."), ("Kissa.", "A cat.")]


def test_tatoeba_mt_schema_maps_each_side_by_its_language(tmp_path):
    rows = {"sourceLang": ["eng"], "targetlang": ["fin"], "sourceString": ["I love cats."],
            "targetString": ["Rakastan kissoja."]}
    repo = write_hub_repo(tmp_path, {"test": Dataset.from_dict(rows)}, "eng-fin")
    pairs = load_parallel(f"hf:{repo}:eng-fin:test")
    assert [(p.src, p.tgt) for p in pairs] == [("Rakastan kissoja.", "I love cats.")]  # Finnish -> English
