"""Every quantization entry point against bad input, as a user would run it: one ``error:`` line and a
non-zero exit, or the right output; and kill-and-resume that loses nothing."""

from pathlib import Path

import pytest
import torch

from quantization import bench as bench_cli
from quantization import eval as eval_cli
from quantization import train as train_cli
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

TOPICS = ["stocks fell as markets slid", "the team won the final match", "new chip speeds up phones",
          "leaders met to discuss the war"]


def write_csv(path: Path, rows: int) -> Path:
    lines = ["label,text"] + [f'{i % 4},"{TOPICS[i % 4]} number {i}"' for i in range(rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def train_argv(csv: Path, out: Path, *extra: str) -> list[str]:
    return ["--preset", "tiny", "--out", str(out), "--train", str(csv), "--dev", str(csv), "--batch-size", "8",
            "--epochs", "1", "--eval-every", "2", "--tiny-vocab", "300", "--tiny-layers", "1", "--tiny-d-model", "32",
            "--tiny-heads", "2", "--max-len", "32", "--select-size", "0", "--device", "cpu", *extra]


@pytest.fixture(autouse=True)
def deterministic():
    torch.use_deterministic_algorithms(True)  # bit-identical resumes, as the resume test in test_train_eval
    yield
    torch.use_deterministic_algorithms(False)


@pytest.fixture(scope="module")
def csv(tmp_path_factory) -> Path:
    return write_csv(tmp_path_factory.mktemp("data") / "ag.csv", 44)  # 6 steps of 8: the last batch has 4 rows


@pytest.fixture(scope="module")
def run(csv, tmp_path_factory) -> Path:
    """One uninterrupted run of 6 steps (checkpoints at 4 and 6 kept): the reference for every test here."""
    out = tmp_path_factory.mktemp("runs") / "full"
    torch.use_deterministic_algorithms(True)
    try:
        assert train_cli.main(train_argv(csv, out)) is None
    finally:
        torch.use_deterministic_algorithms(False)
    return out



def test_a_short_last_batch_trains(run):
    assert logged_steps(run) == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("name", ["model.safetensors", "state.pt"])
@pytest.mark.parametrize("keep", [0.0, 0.5])
def test_eval_and_bench_name_a_damaged_checkpoint_file(run, csv, tmp_path, capsys, name, keep):
    broken = copy_run(run, tmp_path)
    best = broken / "checkpoints" / (broken / "checkpoints" / "best").read_text().strip()
    truncate(best / name, keep)
    for main in (eval_cli.main, bench_cli.main):
        line = assert_one_line_error(run_cli(main, ["--checkpoint", str(broken), "--dev", str(csv), "--train",
                                                    str(csv), "--out", str(tmp_path)] if main is bench_cli.main
                                             else ["--checkpoint", str(broken), "--dev", str(csv)], capsys),
                                     str(best / name))
        assert "damaged" in line


@pytest.mark.parametrize("project", ["translation", "moe_summarization"])
def test_foreign_checkpoints_are_named(csv, tmp_path, capsys, project):
    other = tmp_path / "other"
    foreign_checkpoint(other, project)
    assert_one_line_error(run_cli(eval_cli.main, ["--checkpoint", str(other), "--dev", str(csv)], capsys),
                          f"is a {project} checkpoint, not a quantization one")
    assert_one_line_error(run_cli(bench_cli.main, ["--checkpoint", str(other), "--dev", str(csv), "--train",
                                                   str(csv)], capsys), f"is a {project} checkpoint")
    assert_one_line_error(run_cli(train_cli.main, train_argv(csv, other), capsys),
                          f"is a {project} checkpoint", "pass a new --out")


@pytest.mark.parametrize(("content", "fragment"), [
    ("label,text\n", "has no records"),
    ("", "empty file"),
    ("text,label\n1,a\n", "expected the header 'label,text'"),
    ("label,text\n1," + "x" * 200_000 + "\n", "unreadable CSV (field larger than field limit"),
])
def test_empty_and_malformed_csv_are_refused_before_training(csv, tmp_path, capsys, content, fragment):
    bad = tmp_path / "bad.csv"
    bad.write_text(content, encoding="utf-8")
    for which in ("--train", "--dev"):
        argv = train_argv(csv, tmp_path / "run", which, str(bad))
        assert_one_line_error(run_cli(train_cli.main, argv, capsys), str(bad), fragment)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_fewer_rows_than_a_batch_train(tmp_path, capsys):
    small = write_csv(tmp_path / "small.csv", 3)
    code, _, err = run_cli(train_cli.main, train_argv(small, tmp_path / "run", "--grad-accum", "2"), capsys)
    assert code == 0, err
    assert logged_steps(tmp_path / "run") == [1]


@pytest.mark.parametrize(("flag", "value"), [("--lr", "nan"), ("--lr", "-1e-4"), ("--epochs", "inf"),
                                             ("--batch-size", "0"), ("--dev-limit", "-1"), ("--warmup", "1.5"),
                                             ("--weight-decay", "nan"), ("--clip", "-1")])
def test_absurd_training_numbers_are_refused(csv, tmp_path, capsys, flag, value):
    assert_one_line_error(run_cli(train_cli.main, train_argv(csv, tmp_path / "run", flag, value), capsys),
                          flag.lstrip("-"))


@pytest.mark.parametrize("argv", [["--limit", "-1"], ["--latency-blocks", "0"], ["--calib-batches", "-2"]])
def test_absurd_eval_numbers_are_refused(run, csv, capsys, argv):
    assert_one_line_error(run_cli(eval_cli.main, ["--checkpoint", str(run), "--dev", str(csv), *argv], capsys),
                          argv[0])


def test_a_missing_local_model_folder_is_named(csv, tmp_path, capsys):
    argv = ["--preset", "gpt2-large", "--model", str(tmp_path / "nope" / "gpt2"), "--train", str(csv), "--dev",
            str(csv), "--out", str(tmp_path / "run"), "--select-size", "0"]
    line = assert_one_line_error(run_cli(train_cli.main, argv, capsys), "does not exist", str(tmp_path / "nope"))
    assert "hub" not in line


def test_resume_refuses_a_changed_model_and_prints_a_changed_schedule(run, csv, tmp_path, capsys):
    resumed = copy_run(run, tmp_path)
    assert_one_line_error(run_cli(train_cli.main, train_argv(csv, resumed, "--max-len", "24"), capsys),
                          "max_len 32 -> 24", "a new --out")
    code, out, err = run_cli(train_cli.main, train_argv(csv, resumed, "--epochs", "2"), capsys)
    assert code == 0, err
    assert "resuming with a changed schedule: epochs 1.0 -> 2.0" in out and logged_steps(resumed)[-1] == 12


def test_a_kill_between_checkpoints_resumes_to_identical_weights(run, csv, tmp_path, monkeypatch):
    check_kill_and_resume(train_cli.main, lambda out: train_argv(csv, out), run, tmp_path, monkeypatch)

def test_a_damaged_newest_checkpoint_resumes_from_the_one_before(run, csv, tmp_path, capsys):
    out = check_damaged_newest_resume(train_cli.main, lambda o: train_argv(csv, o), run, tmp_path, capsys,
                                      lambda newest: truncate(newest / "state.pt", 0.3))
    assert "state.pt is damaged" in out
