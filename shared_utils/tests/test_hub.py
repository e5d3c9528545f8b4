"""The hub code paths, offline: real ``datasets`` objects in each default dataset's real schema, saved as
parquet in a local folder laid out like the hub repository, loaded through the same ``datasets.load_dataset``
call an ``hf:`` source makes; the script-dataset fallback; canonical ids; gated models."""

from pathlib import Path

import datasets
import pytest
from datasets import ClassLabel, Dataset, Features, Value

from shared_utils import hub
from shared_utils.data import load_documents, load_labelled, load_parallel
from shared_utils.errors import HubUnavailableError

AG_LABELS = ["World", "Sports", "Business", "Sci/Tech"]


def write_repo(root: Path, splits: dict[str, Dataset], config: str | None = None) -> Path:
    """A dataset folder as the hub lays out a parquet repository: ``<config>/<split>-00000-of-00001.parquet``
    and, for a named config, the README front matter that declares it."""
    folder = root / (config or "data")
    folder.mkdir(parents=True, exist_ok=True)
    for split, ds in splits.items():
        ds.to_parquet(str(folder / f"{split}-00000-of-00001.parquet"))
    if config:
        files = "".join(f"  - split: {s}\n    path: {config}/{s}-*.parquet\n" for s in splits)
        (root / "README.md").write_text(f"---\nconfigs:\n- config_name: {config}\n  data_files:\n{files}---\n")
    return root


def test_ag_news_schema_labels_and_splits(tmp_path):
    features = Features({"text": Value("string"), "label": ClassLabel(names=AG_LABELS)})
    repo = write_repo(tmp_path, {
        "train": Dataset.from_dict({"text": ["Stocks fell.", "Team wins."], "label": [2, 1]}, features=features),
        "test": Dataset.from_dict({"text": ["New chip.", "Talks in Geneva.", " "], "label": [3, 0, 0]},
                                  features=features),
    })
    test = load_labelled(f"hf:{repo}::test", num_labels=4, skip_bad=True)
    assert [(e.label, e.text) for e in test] == [(3, "New chip."), (0, "Talks in Geneva.")]
    assert test.skipped == {"empty text": 1}
    assert [e.label for e in load_labelled(f"hf:{repo}::train", num_labels=4)] == [2, 1]


def test_xsum_schema(tmp_path):
    rows = {"document": ["The storm hit the coast overnight.\nPower was cut."], "summary": ["A storm cut power."],
            "id": ["3801"]}
    repo = write_repo(tmp_path, {"validation": Dataset.from_dict(rows)})
    docs = load_documents(f"hf:{repo}::validation")
    assert [(d.id, d.summary) for d in docs] == [("3801", "A storm cut power.")]
    assert docs[0].document.startswith("The storm")


def test_opus100_schema_with_its_named_config(tmp_path):
    rows = {"translation": [{"en": "Good morning.", "fi": "Hyvää huomenta."}, {"en": "A cat.", "fi": "Kissa."}]}
    repo = write_repo(tmp_path, {"test": Dataset.from_dict(rows), "validation": Dataset.from_dict(rows)}, "en-fi")
    pairs = load_parallel(f"hf:{repo}:en-fi:test")
    assert [(p.src, p.tgt) for p in pairs] == [("Hyvää huomenta.", "Good morning."), ("Kissa.", "A cat.")]


def test_tatoeba_mt_schema_maps_each_side_by_its_language(tmp_path):
    rows = {"sourceLang": ["eng"], "targetlang": ["fin"], "sourceString": ["I love cats."],
            "targetString": ["Rakastan kissoja."]}
    repo = write_repo(tmp_path, {"test": Dataset.from_dict(rows)}, "eng-fin")
    pairs = load_parallel(f"hf:{repo}:eng-fin:test")
    assert [(p.src, p.tgt) for p in pairs] == [("Rakastan kissoja.", "I love cats.")]  # Finnish -> English


def test_a_script_dataset_falls_back_to_its_parquet_conversion(tmp_path, monkeypatch, capsys):
    repo = write_repo(tmp_path, {"test": Dataset.from_dict({"document": ["d"], "summary": ["s"], "id": ["1"]})})
    real, calls = datasets.load_dataset, []

    def load_dataset(path, name=None, *, split=None, revision=None):
        calls.append(revision)
        if revision != hub.PARQUET_REVISION:  # what datasets >= 4 says for a repository with a script
            raise RuntimeError("Dataset scripts are no longer supported, but found xsum.py")
        return real(path, name, split=split)  # the local copy has no git revisions to choose from

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    docs = load_documents(f"hf:{repo}::test")
    assert [d.summary for d in docs] == ["s"] and calls == [None, hub.PARQUET_REVISION]
    assert "loading its parquet conversion (refs/convert/parquet)" in capsys.readouterr().err


def test_legacy_ids_reach_the_hub_as_their_canonical_repositories(monkeypatch):
    seen = []
    monkeypatch.setattr(hub, "hub_reachable", lambda: True)
    monkeypatch.setattr(datasets, "load_dataset", lambda path, name=None, **kw: seen.append(path) or [])
    hub.load_hub_dataset("ag_news", None, "test", local_hint="x")
    assert seen == ["fancyzhx/ag_news"]
    loaded = []
    hub.from_pretrained(loaded.append, "gpt2-large", local_hint="x")
    assert loaded == ["openai-community/gpt2-large"]


def test_a_gated_model_says_it_needs_a_token_and_names_the_ungated_flag(monkeypatch):
    import httpx2  # huggingface_hub's HTTP client: its errors carry the server's response
    from huggingface_hub.errors import GatedRepoError

    monkeypatch.setattr(hub, "hub_reachable", lambda: True)
    response = httpx2.Response(401, request=httpx2.Request("GET", "https://huggingface.co/meta-llama"))

    def refuse(name):
        raise GatedRepoError("401 Client Error: access to this model is restricted", response=response)

    with pytest.raises(HubUnavailableError) as err:
        hub.from_pretrained(refuse, "meta-llama/Meta-Llama-3-8B-Instruct", local_hint="pass a local folder",
                            gated_hint="pass --llama3 with an ungated instruct model")
    message = str(err.value)
    assert "\n" not in message and "401" not in message
    assert message == ("'meta-llama/Meta-Llama-3-8B-Instruct' is a gated model: set HF_TOKEN to a token whose "
                       "account was granted access on https://huggingface.co/meta-llama/Meta-Llama-3-8B-Instruct, "
                       "or pass --llama3 with an ungated instruct model")


def test_a_missing_local_folder_is_not_a_hub_problem(tmp_path):
    with pytest.raises(HubUnavailableError, match=r"the local model folder '.*nope/model' does not exist$"):
        hub.from_pretrained(lambda name: name, str(tmp_path / "nope" / "model"), local_hint="x")
