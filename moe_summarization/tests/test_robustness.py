"""Every moe_summarization entry point against bad input, as a user would run it: one ``error:`` line and a
non-zero exit, or the right output; and kill-and-resume that loses nothing."""

import json
from pathlib import Path

import pytest

from moe_summarization import eval as eval_cli
from moe_summarization import train as train_cli
from shared_utils.testing import (
    assert_one_line_error,
    check_damaged_newest_resume,
    check_kill_and_resume,
    copy_run,
    foreign_checkpoint,
    logged_steps,
    run_cli,
    truncate,
)

PAIRS = [("The central bank raised interest rates by half a point to fight inflation.", "bank raises rates"),
         ("Heavy snow closed the main airport for a second day.", "snow shuts airport"),
         ("The home team won the cup final after a penalty shoot-out.", "home team wins cup")]


def train_argv(data: Path, out: Path, *extra: str) -> list[str]:
    return ["--out", str(out), "--size", "tiny", "--variant", "moe_top1", "--vocab-size", "300", "--train",
            str(data), "--dev", str(data), "--batch-tokens", "600", "--steps", "6", "--eval-every", "2",
            "--dev-limit", "3", "--warmup", "2", "--lr", "3e-3", "--select-size", "1", "--device", "cpu", *extra]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "train.jsonl"
    rows = [{"id": str(i), "document": d, "summary": s} for i, (d, s) in enumerate(PAIRS * 6)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def run(data, tmp_path_factory) -> Path:
    """One uninterrupted 6-step run (checkpoints at 4 and 6 kept): the reference for every test here."""
    out = tmp_path_factory.mktemp("runs") / "full"
    assert train_cli.main(train_argv(data, out)) is None
    return out



def eval_argv(checkpoint: Path, data: Path, tmp_path: Path, *extra: str) -> list[str]:
    return ["--checkpoint", str(checkpoint), "--data", str(data), "--out-dir", str(tmp_path / "eval"),
            "--bertscore-model", "minilm", "--device", "cpu", *extra]


@pytest.mark.parametrize("name", ["model.safetensors", "state.pt", "config.json"])
def test_eval_names_a_damaged_checkpoint_file(run, data, tmp_path, capsys, name):
    broken = copy_run(run, tmp_path)
    best = broken / "checkpoints" / (broken / "checkpoints" / "best").read_text().strip()
    truncate(best / name, 0.0 if name == "state.pt" else 0.5)
    line = assert_one_line_error(run_cli(eval_cli.main, eval_argv(broken, data, tmp_path), capsys), str(best / name))
    assert "damaged" in line


@pytest.mark.parametrize("project", ["translation", "quantization"])
def test_foreign_checkpoints_are_named(data, tmp_path, capsys, project):
    other = tmp_path / "other"
    foreign_checkpoint(other, project)
    assert_one_line_error(run_cli(eval_cli.main, eval_argv(other, data, tmp_path), capsys),
                          f"is a {project} checkpoint, not a moe_summarization one")
    assert_one_line_error(run_cli(train_cli.main, train_argv(data, other), capsys),
                          f"is a {project} checkpoint", "pass a new --out")


@pytest.mark.parametrize(("which", "content", "fragment"), [
    ("--dev", "", "has no records"),
    ("--train", "\n\n", "has no records"),
    ("--dev", '{"document": "x", "summary": "y"}\n[1, 2]\n', ":2: expected a JSON object"),
    ("--train", '{"document": "x", "summary": "\\ud800"}\n', ":1: field 'summary' holds an invalid Unicode"),
    ("--dev", "[" * 100_000 + "\n", ":1: invalid JSON"),
])
def test_empty_and_malformed_inputs_are_refused_before_training(data, tmp_path, capsys, which, content, fragment):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(content, encoding="utf-8")
    assert_one_line_error(run_cli(train_cli.main, train_argv(data, tmp_path / "run", which, str(bad)), capsys),
                          str(bad), fragment)
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize(("flag", "value"), [("--lr", "nan"), ("--steps", "-1"), ("--moe-capacity-factor", "inf"),
                                             ("--eval-every", "0"), ("--dev-limit", "-2"), ("--clip", "nan")])
def test_absurd_numbers_are_refused(data, tmp_path, capsys, flag, value):
    assert_one_line_error(run_cli(train_cli.main, train_argv(data, tmp_path / "run", flag, value), capsys),
                          flag.lstrip("-"))


@pytest.mark.parametrize("argv", [["--limit", "-1"], ["--beam-size", "0"]])
def test_absurd_eval_numbers_are_refused(run, data, tmp_path, capsys, argv):
    assert_one_line_error(run_cli(eval_cli.main, eval_argv(run, data, tmp_path, *argv), capsys), argv[0])


def test_resume_refuses_a_changed_model_and_prints_a_changed_schedule(run, data, tmp_path, capsys):
    resumed = copy_run(run, tmp_path)
    assert_one_line_error(run_cli(train_cli.main, train_argv(data, resumed, "--variant", "dense"), capsys),
                          "variant 'moe_top1' -> 'dense'", "a new --out")
    assert_one_line_error(run_cli(train_cli.main, train_argv(data, resumed, "--moe-num-experts", "2"), capsys),
                          "moe.num_experts 4 -> 2")
    code, out, err = run_cli(train_cli.main, train_argv(data, resumed, "--steps", "7"), capsys)
    assert code == 0, err
    assert "resuming with a changed schedule: steps 6 -> 7" in out and logged_steps(resumed)[-1] == 7


def test_a_kill_between_checkpoints_resumes_to_identical_weights(run, data, tmp_path, monkeypatch):
    check_kill_and_resume(train_cli.main, lambda out: train_argv(data, out), run, tmp_path, monkeypatch)

def test_a_missing_state_in_the_newest_checkpoint_resumes_from_the_one_before(run, data, tmp_path, capsys):
    out = check_damaged_newest_resume(train_cli.main, lambda o: train_argv(data, o), run, tmp_path, capsys,
                                      lambda newest: (newest / "state.pt").unlink())
    assert "missing state.pt" in out


def test_every_checkpoint_damaged_is_an_error_not_a_fresh_start(run, data, tmp_path, capsys):
    broken = copy_run(run, tmp_path)
    kept = sorted((broken / "checkpoints").glob("step_*"))
    for folder in kept:
        truncate(folder / "model.safetensors", 0.9)
    assert_one_line_error(run_cli(train_cli.main, train_argv(data, broken), capsys), "no checkpoint in",
                          "can be loaded")
    assert sorted((broken / "checkpoints").glob("step_*")) == kept and len(kept) >= 2  # nothing removed


def test_eval_out_dir_is_checked_and_never_overwrites_metrics(run, data, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    argv = eval_argv(run, data, tmp_path, "--limit", "2")
    argv[argv.index("--out-dir") + 1] = str(tmp_path / "afile")
    assert_one_line_error(run_cli(eval_cli.main, argv, capsys), "afile is a file, not a folder")
    out = tmp_path / "eval"
    out.mkdir()
    (out / "metrics.json").write_text("{}")
    assert_one_line_error(run_cli(eval_cli.main, eval_argv(run, data, tmp_path, "--limit", "2"), capsys),
                          "already holds metrics.json")
    assert (out / "metrics.json").read_text() == "{}"


def test_eval_of_an_empty_file_is_one_sentence(run, tmp_path, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert_one_line_error(run_cli(eval_cli.main, eval_argv(run, empty, tmp_path), capsys), "has no records")
    assert not (tmp_path / "eval").exists()
