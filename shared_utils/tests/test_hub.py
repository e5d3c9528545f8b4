"""The hub code paths, offline: real ``datasets`` objects in each default dataset's real schema, saved as
parquet in a local folder laid out like the hub repository, loaded through the same ``datasets.load_dataset``
call an ``hf:`` source makes; the script-dataset fallback; gated models."""


import datasets
import pytest
from datasets import Dataset

from shared_utils import hub
from shared_utils.data import hub_rows
from shared_utils.errors import HubUnavailableError
from shared_utils.testing import write_hub_repo


def test_a_script_dataset_falls_back_to_its_parquet_conversion(tmp_path, monkeypatch, capsys):
    repo = write_hub_repo(tmp_path, {"test": Dataset.from_dict({"document": ["d"], "summary": ["s"], "id": ["1"]})})
    real, calls = datasets.load_dataset, []

    def load_dataset(path, name=None, *, split=None, revision=None):
        calls.append(revision)
        if revision != hub.PARQUET_REVISION:  # what datasets >= 4 says for a repository with a script
            raise RuntimeError("Dataset scripts are no longer supported, but found xsum.py")
        return real(path, name, split=split)  # the local copy has no git revisions to choose from

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    docs = list(hub_rows(f"hf:{repo}::test", "x"))
    assert [d["summary"] for d in docs] == ["s"] and calls == [None, hub.PARQUET_REVISION]
    assert "loading its parquet conversion (refs/convert/parquet)" in capsys.readouterr().err


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
