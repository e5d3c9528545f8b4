"""Every translation entry point against bad input, as a user would run it: one ``error:`` line and a non-zero
exit, or the right output; and kill-and-resume that loses nothing."""

import io
import sys
from pathlib import Path

import pytest

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
from translation import eval as eval_cli
from translation import train as train_cli
from translation import translate as translate_cli

WORDS = [("yksi", "one"), ("kaksi", "two"), ("kolme", "three"), ("kissa", "cat"), ("koira", "dog"),
         ("talo", "house")]


def train_argv(data: Path, out: Path, *extra: str) -> list[str]:
    return ["--out", str(out), "--preset", "tiny", "--max-len", "16", "--vocab-size", "300", "--train",
            str(data / "train.tsv"), "--dev", str(data / "train.tsv"), "--batch-tokens", "200", "--steps", "6",
            "--eval-every", "2", "--dev-limit", "5", "--warmup", "2", "--lr", "1e-3", "--select-size", "4",
            "--device", "cpu", *extra]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("data")
    pairs = [f"{a} {b}\t{x} {y}" for a, x in WORDS for b, y in WORDS]
    (folder / "train.tsv").write_text("\n".join(pairs) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def run(data, tmp_path_factory) -> Path:
    """One uninterrupted 6-step run (checkpoints at steps 4 and 6 kept): the reference for every test here."""
    out = tmp_path_factory.mktemp("runs") / "full"
    assert train_cli.main(train_argv(data, out)) is None
    return out



@pytest.mark.parametrize("name", ["model.safetensors", "state.pt", "config.json"])
@pytest.mark.parametrize("keep", [0.0, 0.5])
def test_eval_and_translate_name_a_damaged_checkpoint_file(run, data, tmp_path, capsys, name, keep):
    broken = copy_run(run, tmp_path)
    best = broken / "checkpoints" / (broken / "checkpoints" / "best").read_text().strip()
    truncate(best / name, keep)
    line = assert_one_line_error(run_cli(eval_cli.main, ["--checkpoint", str(broken), "--input",
                                                         str(data / "train.tsv")], capsys), str(best / name))
    assert "damaged" in line
    assert_one_line_error(run_cli(translate_cli.main, ["--checkpoint", str(broken), "--input",
                                                       str(data / "train.tsv")], capsys), "damaged")


def test_eval_reads_every_line_to_decide_the_format(run, data, tmp_path, capsys):
    tsv = tmp_path / "blank_first.tsv"
    tsv.write_bytes(b"\r\n" + (data / "train.tsv").read_bytes().replace(b"\n", b"\r\n"))  # CRLF, blank first
    code, out, err = run_cli(eval_cli.main, ["--checkpoint", str(run), "--input", str(tsv)], capsys)
    assert code == 0, err
    assert out.splitlines()[0].startswith("BLEU")  # scored as a TSV
    mixed = tmp_path / "mixed.tsv"
    mixed.write_text("kissa\tcat\nkoira\n", encoding="utf-8")
    assert_one_line_error(run_cli(eval_cli.main, ["--checkpoint", str(run), "--input", str(mixed)], capsys),
                          "line 1 has a tab", "line 2 has none", "--format")
    code, out, _ = run_cli(eval_cli.main, ["--checkpoint", str(run), "--input", str(mixed), "--format", "text"],
                           capsys)
    assert code == 0 and len(out.splitlines()) == 2  # forced text: both lines translated, to stdout


@pytest.mark.parametrize(("content", "fragment"), [
    (b"", "is empty"),
    (b"\n\n  \n", "is empty"),
    (b"kissa\n\xff\xfe koira\n", ":2: invalid UTF-8"),
    (bytes(range(256)) * 4, "invalid UTF-8"),
])
def test_eval_rejects_empty_and_undecodable_input(run, tmp_path, capsys, content, fragment):
    bad = tmp_path / "input.txt"
    bad.write_bytes(content)
    assert_one_line_error(run_cli(eval_cli.main, ["--checkpoint", str(run), "--input", str(bad)], capsys),
                          str(bad), fragment)


def test_eval_prints_plain_text_translations_and_creates_the_output_folder(run, tmp_path, capsys):
    text = tmp_path / "fi.txt"
    text.write_text("kissa koira\n\ntalo\r\n", encoding="utf-8")
    code, out, _ = run_cli(eval_cli.main, ["--checkpoint", str(run), "--input", str(text)], capsys)
    assert code == 0 and len(out.splitlines()) == 3 and out.splitlines()[1] == ""
    target = tmp_path / "new" / "folder" / "hyps.txt"
    code, _, _ = run_cli(eval_cli.main, ["--checkpoint", str(run), "--input", str(text), "--output", str(target)],
                         capsys)
    assert code == 0 and target.read_text(encoding="utf-8").splitlines() == out.splitlines()
    assert_one_line_error(run_cli(eval_cli.main, ["--checkpoint", str(run), "--input", str(text), "--output",
                                                  str(text / "x")], capsys), "--output")


def test_eval_warns_when_it_truncates(run, tmp_path, capsys):
    text = tmp_path / "long.txt"
    text.write_text(" ".join(["kissa"] * 40) + "\n", encoding="utf-8")
    code, _, err = run_cli(eval_cli.main, ["--checkpoint", str(run), "--input", str(text)], capsys)
    assert code == 0 and "1 line(s) longer than 16 tokens were truncated" in err


def test_translate_keeps_one_output_line_per_input_line(run, monkeypatch, capsys):
    lines = ["kissa\rkoira", "talo\fkissa", "", "yksi kaksi", "koira\r"]  # \r and \f inside lines; CRLF
    stdin = io.TextIOWrapper(io.BytesIO("\n".join(lines).encode() + b"\n"))
    monkeypatch.setattr(sys, "stdin", stdin)
    code, out, err = run_cli(translate_cli.main, ["--checkpoint", str(run)], capsys)
    assert code == 0, err
    assert len(out.split("\n")) == len(lines) + 1 and out.split("\n")[2] == ""


@pytest.mark.parametrize("junk", [b"kissa\n\x80\x81\xfe\n", bytes(range(256))])
def test_translate_names_the_line_of_binary_input(run, tmp_path, monkeypatch, capsys, junk):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(junk)))
    assert_one_line_error(run_cli(translate_cli.main, ["--checkpoint", str(run)], capsys), "<stdin>:", "UTF-8")
    file = tmp_path / "junk.txt"
    file.write_bytes(junk)
    assert_one_line_error(run_cli(translate_cli.main, ["--checkpoint", str(run), "--input", str(file)], capsys),
                          f"{file}:", "UTF-8")


@pytest.mark.parametrize("project", ["quantization", "moe_summarization"])
def test_foreign_checkpoints_are_named(run, data, tmp_path, capsys, project):
    other = tmp_path / "other"
    foreign_checkpoint(other, project)
    for main, argv in ((eval_cli.main, ["--input", str(data / "train.tsv")]), (translate_cli.main, [])):
        assert_one_line_error(run_cli(main, ["--checkpoint", str(other), *argv], capsys),
                              f"is a {project} checkpoint, not a translation one")
    assert_one_line_error(run_cli(train_cli.main, train_argv(data, other), capsys),
                          f"is a {project} checkpoint", "pass a new --out")


@pytest.mark.parametrize(("flag", "value"), [("--lr", "nan"), ("--lr", "inf"), ("--lr", "-1"), ("--steps", "-3"),
                                             ("--batch-tokens", "0"), ("--dev-limit", "-1"), ("--dropout", "nan"),
                                             ("--warmup", "-5"), ("--label-smoothing", "-0.1")])
def test_absurd_numbers_are_refused_before_training(data, tmp_path, capsys, flag, value):
    out = tmp_path / "run"
    assert_one_line_error(run_cli(train_cli.main, train_argv(data, out, flag, value), capsys), flag.lstrip("-"))
    assert not (out / "checkpoints").exists()


@pytest.mark.parametrize(("which", "content"), [("--train", ""), ("--dev", ""), ("--dev", "\n\n")])
def test_empty_inputs_are_refused_before_training(data, tmp_path, capsys, which, content):
    empty = tmp_path / "empty.tsv"
    empty.write_text(content, encoding="utf-8")
    argv = train_argv(data, tmp_path / "run", which, str(empty))
    assert_one_line_error(run_cli(train_cli.main, argv, capsys), f"{which} {empty} has no records")
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_resume_refuses_a_changed_model_and_prints_a_changed_schedule(run, data, tmp_path, capsys):
    resumed = copy_run(run, tmp_path)
    assert_one_line_error(run_cli(train_cli.main, train_argv(data, resumed, "--positional", "relative_bias"),
                                  capsys), "positional 'rope' -> 'relative_bias'", "a new --out")
    assert_one_line_error(run_cli(train_cli.main, train_argv(data, resumed, "--seed", "3"), capsys), "seed 0 -> 3")
    code, out, err = run_cli(train_cli.main, train_argv(data, resumed, "--lr", "5e-4", "--steps", "7"), capsys)
    assert code == 0, err
    assert "resuming with a changed schedule: lr 0.001 -> 0.0005" in out and logged_steps(resumed)[-1] == 7


def test_a_kill_between_checkpoints_resumes_to_identical_weights(run, data, tmp_path, monkeypatch):
    check_kill_and_resume(train_cli.main, lambda out: train_argv(data, out), run, tmp_path, monkeypatch)

def test_a_damaged_newest_checkpoint_resumes_from_the_one_before(run, data, tmp_path, capsys):
    def damage(newest: Path) -> None:
        truncate(newest / "model.safetensors")
        (newest.parent / ".step_00000008.tmp1234").mkdir()  # and a save killed half-way

    out = check_damaged_newest_resume(train_cli.main, lambda o: train_argv(data, o), run, tmp_path, capsys, damage)
    assert "damaged" in out and "resumed from" in out
    assert not (tmp_path / "run" / "checkpoints" / ".step_00000008.tmp1234").exists()


# The newcomer's items (issue 39): each was a traceback, a wrong message or a lost file before.

def test_output_paths_are_one_sentence_or_made(run, tmp_path, capsys):
    source = tmp_path / "fi.txt"
    source.write_text("kissa koira\n", encoding="utf-8")
    assert_one_line_error(run_cli(translate_cli.main, ["--checkpoint", str(run), "--input", str(source),
                                                       "--output", str(tmp_path)], capsys),
                          f"{tmp_path} is a folder: name a file to write")
    deep = tmp_path / "missing" / "dir" / "x.txt"  # its folders are made when the translations are written
    assert run_cli(translate_cli.main, ["--checkpoint", str(run), "--input", str(source), "--output", str(deep)],
                   capsys)[0] == 0
    assert len(deep.read_text(encoding="utf-8").splitlines()) == 1


def test_wrong_kinds_of_path_are_named_as_such(run, tmp_path, capsys):
    assert_one_line_error(run_cli(translate_cli.main, ["--checkpoint", str(run), "--input", str(tmp_path)], capsys),
                          f"{tmp_path} is a folder, not a file")
    config = run / "checkpoints" / (run / "checkpoints" / "best").read_text().strip() / "config.json"
    assert_one_line_error(run_cli(translate_cli.main, ["--checkpoint", str(config)], capsys),
                          "is a file: pass the run folder or the checkpoint folder")


def test_nbest_is_refused_where_it_would_do_nothing_and_named_by_value(run, capsys):
    line = assert_one_line_error(run_cli(translate_cli.main, ["--checkpoint", str(run), "--strategy", "beam",
                                                              "--beam-size", "2", "--nbest", "5"], capsys))
    assert line == "error: --nbest must be between 1 and --beam-size (2), got 5"  # not the whole Strategy(...)
    assert_one_line_error(run_cli(translate_cli.main, ["--checkpoint", str(run), "--nbest", "2"], capsys),
                          "--nbest 2 needs --strategy beam")


def test_interactive_through_a_pipe_keeps_stdout_clean_and_goes_past_blank_lines(run, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("kissa koira\n\nyksi kaksi\n"))
    code, out, err = run_cli(translate_cli.main, ["--checkpoint", str(run), "--interactive"], capsys)
    assert code == 0 and "fi> " not in out and "fi> " in err
    assert len(out.splitlines()) == 2  # both sentences, the one after the blank line too


def test_a_failed_start_leaves_no_folder_and_tilde_is_expanded(data, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    empty = tmp_path / "empty.tsv"
    empty.write_text("", encoding="utf-8")
    argv = train_argv(data, Path("~/run"), "--train", str(empty))
    argv[argv.index("--out") + 1] = "~/run"
    assert_one_line_error(run_cli(train_cli.main, argv, capsys), "has no records")
    assert not (tmp_path / "run").exists() and not (tmp_path / "~").exists()


def test_a_folder_with_someone_elses_config_is_not_overwritten(data, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "config.json").write_text('{"my": "settings"}', encoding="utf-8")
    assert_one_line_error(run_cli(train_cli.main, train_argv(data, out), capsys),
                          "is not empty and holds no translation run")
    assert (out / "config.json").read_text(encoding="utf-8") == '{"my": "settings"}'


def test_a_local_train_without_dev_reads_no_hub(data, tmp_path, capsys):
    argv = train_argv(data, tmp_path / "run", "--steps", "2")
    del argv[argv.index("--dev"):argv.index("--dev") + 2]
    code, out, err = run_cli(train_cli.main, argv, capsys)
    assert code == 0, err
    assert "a local --train without --dev: no dev set is reported" in out
