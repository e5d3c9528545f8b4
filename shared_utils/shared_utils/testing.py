"""Test helpers the three projects' robustness suites share: run a CLI as a user would, damage a file the way
a full disk or a cut copy does, plant another project's checkpoint, and kill a training run mid-step.

Only tests import this module.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from .checkpoint import metric_rows, save_checkpoint
from .errors import UserError


def run_cli(main: Callable[[list[str]], object], argv: list[str], capsys) -> tuple[int, str, str]:
    """``main(argv)`` in this process: (exit status, stdout, stderr). Any exception other than ``SystemExit``
    propagates, so a traceback a user would see fails the test."""
    capsys.readouterr()
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(result: tuple[int, str, str], *fragments: str) -> str:
    """A non-zero exit whose stderr ends in one ``error:`` line holding every fragment, and no traceback
    (warnings may come before it). Returns that line."""
    code, _, err = result
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code != 0, f"expected a failure, got exit {code}: {err}"
    assert "Traceback" not in err, err
    assert lines and lines[-1].startswith("error: "), err
    assert all(line.startswith("warning: ") for line in lines[:-1]), err
    assert "unrecognized arguments" not in lines[-1], err  # a misspelt flag in the test would pass otherwise
    for fragment in fragments:
        assert fragment in lines[-1], f"{fragment!r} not in {lines[-1]!r}"
    return lines[-1]


def torchrun(*args: str, nproc: int = 2, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node=nproc *args`` with this interpreter's torchrun: gloo on the
    CPU, a free port, one thread per process, offline; stdout and stderr captured."""
    command = [str(Path(sys.executable).parent / "torchrun"), "--standalone", f"--nproc_per_node={nproc}", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})


def ddp_replicas_identical(setup: str, call: str, module: str, tmp_path: Path, cwd: Path) -> bool:
    """Train under ``torchrun`` with 2 gloo processes and say whether both ranks end with bit-identical weights.

    ``module`` is the training module (its ``build_model`` is wrapped to capture the model), ``setup`` the lines
    that import and configure, ``call`` the training call, with the module imported as ``t``."""
    script = tmp_path / "ddp_check.py"
    script.write_text(
        f"import os, pathlib, torch\n{setup}\nimport {module} as t\ncaptured = {{}}\noriginal = t.build_model\n"
        "def build(cfg):\n    captured['m'] = original(cfg)\n    return captured['m']\n"
        f"t.build_model = build\n{call}\n"
        "flat = torch.cat([p.detach().flatten() for p in captured['m'].parameters()])\n"
        f"torch.save(flat, {str(tmp_path)!r} + f\"/rank{{os.environ['RANK']}}.pt\")\n")
    proc = torchrun(str(script), cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return torch.equal(torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt"))


def truncate(file: Path, keep: float = 0.5) -> None:
    """Cut ``file`` to a fraction of its bytes (0 = an empty file), as a killed copy or a full disk leaves it."""
    data = file.read_bytes()
    file.write_bytes(data[: int(len(data) * keep)])


def foreign_checkpoint(run_dir: Path, project: str) -> Path:
    """A published checkpoint in ``run_dir`` whose config says another ``project`` wrote it."""
    config = {"project": project, "model": {"d_model": 8}, "train": {"steps": 1}}
    return save_checkpoint(run_dir, "step_00000001", model=torch.nn.Linear(2, 2), state={"step": 1},
                           config=config)


class Killed(BaseException):
    """Stands in for SIGKILL: not an ``Exception``, so no handler in the code under test catches it."""


def kill_at_step(monkeypatch, step: int) -> None:
    """Make the ``step``-th call of ``clip_grad_norm_`` (once per optimizer step in every trainer) raise
    :class:`Killed`: the run dies inside that step, after logging the ones before it."""
    original, calls = torch.nn.utils.clip_grad_norm_, {"n": 0}

    def clip(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == step:
            raise Killed(f"killed in step {step}")
        return original(*args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip)


def logged_steps(run_dir: Path) -> list[int]:
    """The ``step`` of every row of ``run_dir/metrics.jsonl``, in file order."""
    return [row["step"] for row in metric_rows(run_dir)]


def weights_bytes(run_dir: Path, tag: str) -> bytes:
    """The raw bytes of a checkpoint's weights file, for byte-for-byte comparisons."""
    return (Path(run_dir) / "checkpoints" / tag / "model.safetensors").read_bytes()


def copy_run(run_dir: Path, tmp_path: Path) -> Path:
    """A copy of a finished run folder, to damage or resume without touching the reference."""
    import shutil

    shutil.copytree(run_dir, tmp_path / "run")
    return tmp_path / "run"


def check_kill_and_resume(main: Callable[[list[str]], object], argv: Callable[[Path], list[str]], reference: Path,
                          tmp_path: Path, monkeypatch, *, kill_step: int = 4, steps: int = 6) -> None:
    """A run killed inside ``kill_step`` (between two checkpoints), then rerun with the same flags, logs each
    step once and ends with weights byte-identical to the uninterrupted ``reference`` run."""
    import pytest

    cut = tmp_path / "cut"
    kill_at_step(monkeypatch, kill_step)
    with pytest.raises(Killed):
        main(argv(cut))
    assert logged_steps(cut) == list(range(1, kill_step))
    monkeypatch.undo()
    assert main(argv(cut)) is None
    assert logged_steps(cut) == list(range(1, steps + 1))  # each step once
    tag = f"step_{steps:08d}"
    assert weights_bytes(cut, tag) == weights_bytes(reference, tag)


def check_damaged_newest_resume(main: Callable[[list[str]], object], argv: Callable[[Path], list[str]],
                                reference: Path, tmp_path: Path, capsys, damage: Callable[[Path], None], *,
                                steps: int = 6, before: int = 4) -> str:
    """Damage the newest checkpoint of a copy of ``reference`` (``damage(folder)``), rerun: the run says it
    skipped it, resumes from the one before, and ends byte-identical to ``reference``. Returns stdout."""
    broken = copy_run(reference, tmp_path)
    newest = f"step_{steps:08d}"
    damage(broken / "checkpoints" / newest)
    code, out, err = run_cli(main, argv(broken), capsys)
    assert code == 0, err
    assert f"warning: skipped checkpoint {newest}" in out and f"step_{before:08d}" in out
    assert weights_bytes(broken, newest) == weights_bytes(reference, newest)
    assert logged_steps(broken) == list(range(1, steps + 1))
    return out


# -- readers ------------------------------------------------------------------------------------------------------
# hypothesis settings for the readers' fuzz tests: derandomized (the same examples on every run, so CI is
# deterministic), no example database on disk
FUZZ_SETTINGS = dict(max_examples=150, deadline=None, derandomize=True, database=None)


def records_or_user_error(load: Callable[[Path], object], path: Path):
    """``load(path).records``, or None where it raised a :class:`UserError` naming the file; any other
    exception fails the test (a reader never shows a user a traceback)."""
    try:
        return load(path).records
    except UserError as exc:
        assert str(exc).startswith(str(path)), exc  # the message names the file
        return None


def write_hub_repo(root: Path, splits: dict, config: str | None = None) -> Path:
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
