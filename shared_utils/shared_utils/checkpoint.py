"""Crash-safe checkpoints: one layout for every project.

    run_dir/checkpoints/
        step_00001200/          one complete checkpoint, never modified after it is published
            model.safetensors   weights (tied tensors stored once)
            state.pt            optimizer, scheduler, step, RNG states, data position, ...
            config.json         the resolved config, so eval rebuilds the model from the folder alone
            <extra files>       e.g. tokenizer.json
        latest                  text file: the name of the newest checkpoint
        best                    text file: the name of the best checkpoint (optional)

A checkpoint is written into a temporary folder, every file fsynced, then renamed into place; the pointer
files are replaced atomically afterwards. A crash at any point leaves the previous ``latest`` intact.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model

from .errors import UserError
from .runtime import rng_state, set_rng_state

WEIGHTS = "model.safetensors"
STATE = "state.pt"
CONFIG = "config.json"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder, fsync, then ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


@dataclass
class Checkpoint:
    """A published checkpoint folder and its small files, already read."""

    path: Path
    config: dict[str, Any]
    state: dict[str, Any]

    def load_weights(self, model: torch.nn.Module, strict: bool = True) -> None:
        """Load ``model.safetensors`` into ``model`` (which must have been built from :attr:`config`)."""
        load_model(model, self.path / WEIGHTS, strict=strict)

    def read_text(self, name: str) -> str:
        return (self.path / name).read_text(encoding="utf-8")


def save_checkpoint(
    run_dir: str | Path,
    tag: str,
    *,
    model: torch.nn.Module,
    state: dict[str, Any],
    config: dict[str, Any],
    extra_files: dict[str, str | bytes] | None = None,
    keep_last: int = 2,
) -> Path:
    """Publish ``run_dir/checkpoints/<tag>`` atomically, point ``latest`` at it and prune old ones.

    ``keep_last`` newest checkpoints are kept, plus whichever one ``best`` points to.
    """
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / tag
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{tag}."))
    try:
        save_model(model, str(tmp / WEIGHTS))
        torch.save(state, tmp / STATE)
        (tmp / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True), encoding="utf-8")
        for name, data in (extra_files or {}).items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_bytes(data.encode() if isinstance(data, str) else data)
        for file in tmp.rglob("*"):
            if file.is_file():
                with file.open("rb") as f:
                    os.fsync(f.fileno())
        if final.exists():  # re-saving the same tag (e.g. a resumed run): swap the old one out first
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(root)
    atomic_write(root / "latest", tag)
    _prune(root, keep_last)
    return final


def mark_best(run_dir: str | Path, tag: str) -> None:
    """Point ``best`` at an already published checkpoint."""
    root = Path(run_dir) / "checkpoints"
    if not (root / tag).is_dir():
        raise UserError(f"cannot mark missing checkpoint {root / tag} as best")
    atomic_write(root / "best", tag)


def _pointer(root: Path, name: str) -> str | None:
    file = root / name
    return file.read_text().strip() if file.is_file() else None


def _prune(root: Path, keep_last: int) -> None:
    published = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    protected = {_pointer(root, "latest"), _pointer(root, "best")}
    for old in published[:-keep_last] if keep_last > 0 else published:
        if old.name not in protected:
            shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob(".*.*"):  # temp folders left by a crash mid-write
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint folder (or a run folder, meaning its ``latest``); clear error when it is not one."""
    path = Path(path)
    if (path / "checkpoints").is_dir() and not (path / WEIGHTS).exists():
        found = load_latest(path)
        if found is None:
            raise UserError(f"{path} holds no published checkpoint")
        return found
    if not path.is_dir():
        raise UserError(f"checkpoint not found: {path}")
    missing = [n for n in (WEIGHTS, STATE, CONFIG) if not (path / n).is_file()]
    if missing:
        raise UserError(f"{path} is not a checkpoint folder (missing {', '.join(missing)})")
    config = json.loads((path / CONFIG).read_text(encoding="utf-8"))
    state = torch.load(path / STATE, map_location="cpu", weights_only=False)
    return Checkpoint(path, config, state)


def load_latest(run_dir: str | Path, which: str = "latest") -> Checkpoint | None:
    """The checkpoint that ``latest`` (or ``best``) points to, or ``None`` for a fresh run."""
    root = Path(run_dir) / "checkpoints"
    tag = _pointer(root, which) if root.is_dir() else None
    return load_checkpoint(root / tag) if tag else None


def load_best(path: str | Path) -> Checkpoint:
    """What evaluation loads: a run folder's best checkpoint (else its latest), or a checkpoint folder itself."""
    path = Path(path)
    found = load_latest(path, "best") if (path / "checkpoints").is_dir() else None
    return found or load_checkpoint(path)


@dataclass
class Progress:
    """Where a training run stands besides its weights and optimizer: what exact resume restores."""

    step: int = 0  # optimizer steps done
    epoch: int = 0
    batch_pos: int = 0  # the next batch in this epoch's deterministic order
    best: dict = field(default_factory=dict)  # the best validation result so far, with its step


def save_progress(run_dir: str | Path, progress: Progress, *, model: torch.nn.Module, optimizer, config: dict,
                  extra_files: dict[str, str] | None = None, is_best: bool = False) -> None:
    """A training checkpoint (weights, optimizer, RNG states, progress), published atomically as
    ``step_XXXXXXXX``, then marked best if it is."""
    tag = f"step_{progress.step:08d}"
    state = {"optimizer": optimizer.state_dict(), "rng": rng_state(), **asdict(progress)}
    save_checkpoint(run_dir, tag, model=model, state=state, config=config, extra_files=extra_files)
    if is_best:
        mark_best(run_dir, tag)


def restore_progress(ckpt: Checkpoint, optimizer) -> Progress:
    """Load the optimizer and RNG states of ``ckpt`` and return where its run stood."""
    optimizer.load_state_dict(ckpt.state["optimizer"])
    set_rng_state(ckpt.state["rng"])
    return Progress(**{f.name: ckpt.state[f.name] for f in fields(Progress)})


def open_metrics(run_dir: Path, step: int):
    """Open ``run_dir/metrics.jsonl`` for appending from ``step`` on: rows of later steps, written after the
    checkpoint a run resumes from, are dropped (the resumed run logs those steps again), so the log holds
    each step once. ``step`` 0 starts a fresh log."""
    path = Path(run_dir) / "metrics.jsonl"
    if path.is_file():
        rows = [line for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= step]
        tmp = path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(r + "\n" for r in rows), encoding="utf-8")
        os.replace(tmp, path)
    return path.open("a", encoding="utf-8")
