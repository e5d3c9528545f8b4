"""One rule for every file and folder flag: ``~`` expanded, resolved, the kind checked where the flag is read,
folders made late; run folders that are not ours refused; published results written only when asked."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from shared_utils.checkpoint import check_resume_config
from shared_utils.cli import (
    Parser,
    add_dataclass_flags,
    add_results_flags,
    data_source,
    input_file,
    no_hub_dev_for_local_train,
    output_dir,
    output_file,
    results_folder,
    user_path,
    write_output,
)
from shared_utils.data import default_selection_size, selection_note, selection_split
from shared_utils.errors import UserError
from shared_utils.loop import check_run_folder


def test_tilde_is_expanded_and_a_path_is_resolved(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert user_path("~/run") == tmp_path / "run"
    assert user_path("a/../b") == tmp_path / "b"
    assert output_dir("~/run") == tmp_path / "run" and not (tmp_path / "run").exists()  # nothing made here
    assert not (tmp_path / "~").exists()


@pytest.mark.parametrize(("kind", "name", "message"), [
    (input_file, "folder", "folder is a folder, not a file"),
    (input_file, "missing.txt", "missing.txt: no such file"),
    (output_file, "folder", "folder is a folder: name a file to write"),
    (output_file, "file.txt/x.txt", "file.txt/x.txt: {tmp}/file.txt is a file, not a folder"),
    (output_dir, "file.txt", "file.txt is a file, not a folder"),
])
def test_each_path_kind_is_one_sentence(kind, name, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "folder").mkdir()
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(argparse.ArgumentTypeError) as err:
        kind(name)
    assert str(err.value) == message.format(tmp=tmp_path)


def test_an_output_file_gets_its_folders_when_written(tmp_path):
    target = output_file(str(tmp_path / "missing" / "dir" / "x.txt"))
    assert not (tmp_path / "missing").exists()
    write_output(target, "hello\n")
    assert target.read_text() == "hello\n"


def test_hub_ids_pass_and_local_data_is_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.tsv").write_text("a\tb\n")
    assert data_source("hf:Helsinki-NLP/opus-100:en-fi:train") == "hf:Helsinki-NLP/opus-100:en-fi:train"
    assert data_source("train.tsv") == str(tmp_path / "train.tsv")


@dataclass
class Config:
    train: str = field(default="hf:x::train", metadata={"path": "data", "help": "training data"})
    dev: list[str] = field(default_factory=lambda: ["hf:x::dev"], metadata={"path": "data"})
    positional: str = field(default="rope", metadata={"choices": ("rope", "sinusoidal"), "help": "positions"})
    steps: int = 100
    select_size: int | None = None


def test_generated_flags_show_their_default_and_choices_and_check_paths(tmp_path, capsys):
    p = Parser()
    add_dataclass_flags(p, Config)
    text = p.format_help()
    assert "positions; choices: rope, sinusoidal; default: rope" in " ".join(text.split())
    assert "default: 100" in text and "default: hf:x::dev" in text
    with pytest.raises(SystemExit):
        p.parse_args(["--positional", "alibi"])
    assert "invalid choice: 'alibi'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        p.parse_args(["--dev", str(tmp_path)])
    assert f"{tmp_path} is a folder, not a file" in capsys.readouterr().err
    assert vars(p.parse_args(["--select-size", "none"]))["select_size"] is None


def test_a_local_train_without_dev_fetches_no_hub_dev():
    args = {"train": "/data/train.tsv"}
    assert no_hub_dev_for_local_train(args, []) and args["dev"] == []
    hub, both = {"train": "hf:x::train"}, {"train": "/data/train.tsv", "dev": ["/data/dev.tsv"]}
    assert not no_hub_dev_for_local_train(hub, []) and "dev" not in hub
    assert not no_hub_dev_for_local_train(both, []) and both["dev"] == ["/data/dev.tsv"]


def test_the_selection_split_fits_small_data_by_default():
    assert default_selection_size(117) == 11 and default_selection_size(400) == 40
    assert default_selection_size(59_931) == 1000
    train, select = selection_split(list(range(400)), None)
    assert len(select) == 40 and len(train) == 360
    assert selection_split(list(range(400)), 0) == (list(range(400)), [])
    note = selection_note(40, 360, "pairs", None)
    assert note == ("selection split: 40 pairs carved from --train (checkpoint choice) (--select-size not given: "
                    "1,000, or a tenth of the distinct pairs where that is fewer); 360 left to train on")
    assert "not given" not in selection_note(40, 360, "pairs", 40)


def test_a_run_folder_that_is_not_ours_is_refused_before_any_work(tmp_path):
    check_run_folder(tmp_path / "new", "translation")  # new: fine, and not made yet
    assert not (tmp_path / "new").exists()
    check_run_folder(tmp_path, "translation")  # empty: fine
    (tmp_path / "config.json").write_text(json.dumps({"project": "translation"}))
    check_run_folder(tmp_path, "translation")  # our own run: resume or start again
    with pytest.raises(UserError, match="is a translation checkpoint.s run folder, not a quantization one"):
        check_run_folder(tmp_path, "quantization")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.json").write_text('{"my": "settings"}')  # the user's own file: never overwritten
    with pytest.raises(UserError, match="is not empty and holds no translation run"):
        check_run_folder(mine, "translation")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(UserError, match="is a file, not a folder"):
        check_run_folder(tmp_path / "afile", "translation")


def test_resume_takes_the_same_file_named_another_way(tmp_path, monkeypatch):
    data = tmp_path / "data" / "train.tsv"
    data.parent.mkdir()
    data.write_text("a\tb\n")
    monkeypatch.chdir(tmp_path)
    saved = {"train": {"train": "data/train.tsv", "lr": 1.0}}
    check_resume_config(tmp_path, saved, {"train": {"train": str(data), "lr": 1.0}}, may_change=())
    monkeypatch.chdir(data.parent)
    check_resume_config(tmp_path, {"train": {"train": str(data)}}, {"train": {"train": "./train.tsv"}}, may_change=())
    other = tmp_path / "other.tsv"
    other.write_text("c\td\n")
    with pytest.raises(UserError, match="other settings"):
        check_resume_config(tmp_path, saved, {"train": {"train": str(other)}}, may_change=())


def test_benchmarks_write_the_published_tables_only_when_asked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    results = tmp_path / "project" / "results"
    p = Parser()
    add_results_flags(p, results, "study")
    assert results_folder(p.parse_args([]), results, "study") == tmp_path / "runs" / "study"
    assert results_folder(p.parse_args(["--publish"]), results, "study") == results
    assert results_folder(p.parse_args(["--out", "mine"]), results, "study") == tmp_path / "mine"
    with pytest.raises(UserError, match="--publish writes"):
        results_folder(p.parse_args(["--publish", "--out", "mine"]), results, "study")
    assert isinstance(results_folder(p.parse_args([]), results, "study"), Path)
