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
files are replaced atomically afterwards. A crash at any point leaves the previous ``latest`` intact, and the
half-written temp folder (``.step_XXXXXXXX.*``) is removed by the next save or resume.

Reading is defensive, because disks fill up and copies get cut short: :func:`load_checkpoint` checks every file
(the weights file's length against its own header, the state and config as they load) and names the damaged
file in one sentence; :func:`load_resumable` skips a damaged checkpoint, says so, and resumes from the newest
one that loads; :func:`check_project` and :func:`check_resume_config` stop a run whose ``--out`` holds another
project's checkpoints, or a run trained with other model or data settings.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
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


def store_result(path: str | Path, key: dict, entry: dict) -> None:
    """Keep a finished run's scores (``entry``) in its folder, under the settings they were made with (``key``),
    so that a benchmark restarted after a kill reads them back (:func:`stored_result`) instead of decoding its
    evaluation sets again: on a CPU that is minutes per run, paid again by every restart of a long sweep."""
    atomic_write(path, json.dumps({"key": key, "entry": entry}))


def stored_result(path: str | Path, key: dict, *, stale: str | None = None) -> dict | None:
    """The entry :func:`store_result` kept at ``path`` under ``key``; None when there is none yet.

    One kept under another key is stale. With ``stale`` (a message) that is an error: the caller's run itself
    was made with other settings, and reusing it would file its old weights under the new ones. Without it,
    the entry is ignored (None): only the scoring changed, and the run is scored again."""
    path = Path(path)
    if not path.is_file():
        return None
    stored = json.loads(path.read_text(encoding="utf-8"))
    if stored.get("key") == json.loads(json.dumps(key)):  # as JSON keeps it: tuples become lists
        return stored["entry"]
    if stale is not None:
        raise UserError(stale)
    return None


class DamagedCheckpointError(UserError):
    """A checkpoint file that cannot be read: truncated, empty, or not what its name says."""

    def __init__(self, file: Path, reason: str):
        self.file, self.reason = file, reason
        super().__init__(f"checkpoint file {file} is damaged ({reason}); use another checkpoint, or retrain")


def verify_weights(file: Path) -> None:
    """Check a safetensors file without loading it: its length must be the one its own header promises.

    The format is an 8-byte little-endian header length, a JSON header whose ``data_offsets`` locate every
    tensor, then the tensor bytes; a copy or save cut short is shorter than header + the last offset.
    """
    size = file.stat().st_size
    if size == 0:
        raise DamagedCheckpointError(file, "empty file")
    try:
        with file.open("rb") as f:
            (header_len,) = struct.unpack("<Q", f.read(8))
            if 8 + header_len > size:
                raise ValueError("header runs past the end")
            header = json.loads(f.read(header_len))
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    except (struct.error, ValueError, KeyError, TypeError, IndexError, UnicodeDecodeError):
        raise DamagedCheckpointError(file, "not a safetensors file, or its header is cut") from None
    if 8 + header_len + end != size:
        raise DamagedCheckpointError(file, f"{size} bytes where its header promises {8 + header_len + end}: "
                                           "the file was cut short or overwritten")


@dataclass
class Checkpoint:
    """A published checkpoint folder and its small files, already read."""

    path: Path
    config: dict[str, Any]
    state: dict[str, Any]

    def load_weights(self, model: torch.nn.Module, strict: bool = True) -> None:
        """Load ``model.safetensors`` into ``model`` (which must have been built from :attr:`config`)."""
        try:
            load_model(model, self.path / WEIGHTS, strict=strict)
        except SafetensorError as exc:  # damaged after load_checkpoint looked at it (or a header we cannot see)
            raise DamagedCheckpointError(self.path / WEIGHTS, str(exc)) from None

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
    _publish(root / tag, model, state, config, extra_files or {})
    atomic_write(root / "latest", tag)
    _prune(root, keep_last)
    return root / tag


def _publish(final: Path, model: torch.nn.Module, state: dict[str, Any], config: dict[str, Any],
             extra_files: dict[str, str | bytes]) -> None:
    """Write a checkpoint folder into a temp folder beside ``final``, fsync every file, then rename it into
    place (replacing an older folder of that name: a resumed run re-saving its tag)."""
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}."))
    try:
        save_model(model, str(tmp / WEIGHTS))
        torch.save(state, tmp / STATE)
        (tmp / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True), encoding="utf-8")
        for name, data in extra_files.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_bytes(data.encode() if isinstance(data, str) else data)
        for file in tmp.rglob("*"):
            if file.is_file():
                with file.open("rb") as f:
                    os.fsync(f.fileno())
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(final.parent)


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
    published = _published(root)
    protected = {_pointer(root, "latest"), _pointer(root, "best")}
    for old in published[:-keep_last] if keep_last > 0 else published:
        if old.name not in protected:
            shutil.rmtree(old, ignore_errors=True)
    remove_stale(root.parent)


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint folder (or a run folder, meaning its ``latest``); clear error when it is not one."""
    path = Path(path)
    if (path / "checkpoints").is_dir() and not (path / WEIGHTS).exists():
        found = load_latest(path)
        if found is None:
            raise UserError(f"{path} holds no published checkpoint")
        return found
    if path.is_file():
        raise UserError(f"--checkpoint {path} is a file: pass the run folder or the checkpoint folder "
                        f"({path.parent}), not one of its files")
    if not path.is_dir():
        raise UserError(f"checkpoint not found: {path}")
    missing = [n for n in (WEIGHTS, STATE, CONFIG) if not (path / n).is_file()]
    if missing:
        raise UserError(f"{path} is not a checkpoint folder (missing {', '.join(missing)})")
    verify_weights(path / WEIGHTS)
    try:
        config = json.loads((path / CONFIG).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DamagedCheckpointError(path / CONFIG, f"not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise DamagedCheckpointError(path / CONFIG, "not a JSON object")
    try:
        state = torch.load(path / STATE, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises RuntimeError, EOFError or UnpicklingError for a cut file
        raise DamagedCheckpointError(path / STATE, f"{type(exc).__name__}: {str(exc).splitlines()[0][:80]}") \
            from None
    if not isinstance(state, dict):
        raise DamagedCheckpointError(path / STATE, "not a training state")
    return Checkpoint(path, config, state)


def _published(root: Path) -> list[Path]:
    """Published checkpoint folders, oldest first (tags are zero-padded steps, so names sort by step)."""
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) if root.is_dir() else []


def remove_stale(run_dir: str | Path) -> None:
    """Delete what a crash mid-save leaves behind: ``.tag.*`` temp folders and ``.name.*.tmp`` pointer files."""
    root = Path(run_dir) / "checkpoints"
    for stale in root.glob(".*.*") if root.is_dir() else []:
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def load_resumable(run_dir: str | Path, log: Callable[[str], None] = print) -> Checkpoint | None:
    """The newest checkpoint of ``run_dir`` that loads, or ``None`` for a fresh run.

    A damaged or incomplete checkpoint is skipped with one line saying which and why; resuming from the one
    before it loses only the steps since, which the run replays exactly. When checkpoints exist but none
    loads, that is an error: starting afresh would overwrite them.
    """
    remove_stale(run_dir)
    candidates = _published(Path(run_dir) / "checkpoints")[::-1]
    for folder in candidates:
        try:
            return load_checkpoint(folder)
        except UserError as exc:
            log(f"warning: skipped checkpoint {folder.name}: {exc}")
    if candidates:
        raise UserError(f"no checkpoint in {Path(run_dir) / 'checkpoints'} can be loaded (see the warnings above); "
                        "move the folder away to start afresh, or pass a new --out")
    return None


def load_latest(run_dir: str | Path, which: str = "latest") -> Checkpoint | None:
    """The checkpoint that ``latest`` (or ``best``) points to, or ``None`` for a fresh run."""
    root = Path(run_dir) / "checkpoints"
    tag = _pointer(root, which) if root.is_dir() else None
    return load_checkpoint(root / tag) if tag else None


def load_average(run_dir: str | Path, n: int, model: torch.nn.Module) -> Checkpoint:
    """Load into ``model`` the element-wise mean of the weights of the ``n`` newest checkpoints of a run
    (checkpoint averaging, as in Vaswani et al. 2017); returns the newest one (its config and tokenizer). Each is
    checked as it loads; fewer than ``n`` kept is one sentence (train with a larger ``keep_checkpoints``)."""
    folders = _published(Path(run_dir) / "checkpoints")[-n:]
    if len(folders) < n:
        raise UserError(f"{run_dir} keeps {len(folders)} checkpoint(s), fewer than the {n} to average: train it "
                        f"with --keep-checkpoints {n} or more")
    total: dict[str, torch.Tensor] = {}
    for folder in folders:
        ckpt = load_checkpoint(folder)
        ckpt.load_weights(model)  # tied matrices, saved once, come back under every name
        for name, tensor in model.state_dict().items():
            total[name] = total.get(name, 0) + tensor.double()
    model.load_state_dict({name: (t / n).to(model.state_dict()[name].dtype) for name, t in total.items()})
    return ckpt


def save_average(run_dir: str | Path, n: int, model: torch.nn.Module) -> Path:
    """Average the run's ``n`` newest checkpoints into ``model`` (:func:`load_average`) and publish the result as
    a checkpoint folder of its own, ``run_dir/average_last<n>``: the newest one's config and extra files (the
    tokenizer), a state naming the checkpoints averaged. Every loader takes it like any checkpoint; it lies
    outside ``checkpoints/``, so resuming and pruning never see it."""
    newest = load_average(run_dir, n, model)
    averaged = [p.name for p in _published(Path(run_dir) / "checkpoints")[-n:]]
    extra = {f.name: f.read_bytes() for f in newest.path.iterdir() if f.is_file() and f.name not in (WEIGHTS, STATE,
                                                                                                      CONFIG)}
    final = Path(run_dir) / f"average_last{n}"
    _publish(final, model, {"averaged": averaged}, newest.config, extra)
    return final


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
                  extra_files: dict[str, str] | None = None, is_best: bool = False, keep_last: int = 2) -> None:
    """A training checkpoint (weights, optimizer, RNG states, progress), published atomically as
    ``step_XXXXXXXX``, then marked best if it is; the ``keep_last`` newest (and the best) are kept."""
    tag = f"step_{progress.step:08d}"
    state = {"optimizer": optimizer.state_dict(), "rng": rng_state(), **asdict(progress)}
    save_checkpoint(run_dir, tag, model=model, state=state, config=config, extra_files=extra_files,
                    keep_last=keep_last)
    if is_best:
        mark_best(run_dir, tag)


def restore_progress(ckpt: Checkpoint, optimizer) -> Progress:
    """Load the optimizer and RNG states of ``ckpt`` and return where its run stood."""
    try:
        optimizer.load_state_dict(ckpt.state["optimizer"])
        set_rng_state(ckpt.state["rng"])
    except (KeyError, ValueError, TypeError) as exc:  # a state written for another model or by other code
        raise UserError(f"{ckpt.path / STATE} does not fit this run ({type(exc).__name__}: {exc}); "
                        "retrain into a new --out folder") from None
    return Progress(**{f.name: ckpt.state[f.name] for f in fields(Progress) if f.name in ckpt.state})


def metric_rows(run_dir: Path) -> list[dict]:
    """Every row of ``run_dir/metrics.jsonl`` (one per logged step; evaluation rows carry ``<split>/<metric>``)."""
    lines = (Path(run_dir) / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


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


def checkpoint_project(config: dict) -> str:
    """Which project wrote a checkpoint: the ``project`` its config names (every project writes one)."""
    return str(config.get("project", "unknown"))


def check_project(ckpt: Checkpoint, project: str, hint: str) -> None:
    """One sentence, not a ``KeyError``, when a checkpoint of another project is handed to ``project``."""
    found = checkpoint_project(ckpt.config)
    if found != project:
        whose = f"a {found} checkpoint" if found != "unknown" else "a checkpoint of no project in this repository"
        raise UserError(f"{ckpt.path} is {whose}, not a {project} one; {hint}")


def _flat(config: dict) -> dict:
    """Top-level settings plus those of the ``model`` and ``train`` sections, in one dict; a config nested in a
    section is spelled with dots (``moe.num_experts``)."""
    flat = {k: v for k, v in config.items() if not isinstance(v, dict)}
    for section in ("model", "train"):
        if not isinstance(config.get(section), dict):
            continue
        for key, value in config[section].items():
            if isinstance(value, dict):
                flat.update({f"{key}.{k}": v for k, v in value.items()})
            else:
                flat[key] = value
    return flat


def _same_files(value):
    """A setting as resume compares it: a path to an existing file as that file (``~`` expanded, absolute,
    resolved), so the file named relatively, absolutely or from another folder is the same setting."""
    if isinstance(value, list):
        return [_same_files(v) for v in value]
    if isinstance(value, str) and value and not value.startswith("hf:"):
        path = Path(os.path.expanduser(value))
        if path.is_file():
            return str(path.resolve())
    return value


def check_resume_config(run_dir: str | Path, saved: dict, now: dict, *, may_change: Iterable[str],
                        ignore: Iterable[str] = (), log: Callable[[str], None] = print) -> None:
    """Stop a resume whose flags change the model or the data; allow (and print) a changed schedule.

    ``saved`` is the config stored in the checkpoint, ``now`` the one this run's flags resolve to, in the same
    layout. Resuming keeps the saved model and data, so a changed model field or ``--train`` would be
    silently ignored; a changed ``--lr`` or ``--steps`` is a deliberate change of schedule. Fields missing on
    either side (written by older code) are not compared.
    """
    old, new, skip = _flat(saved), _flat(now), set(ignore)
    changed = {k: (old[k], v) for k, v in new.items()
               if k in old and k not in skip and _same_files(old[k]) != _same_files(v)}
    refused = {k: ab for k, ab in changed.items() if k not in set(may_change)}
    if refused:
        what = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in refused.items())
        raise UserError(f"{run_dir} holds a run trained with other settings ({what}); pass the same flags to "
                        "resume it, or a new --out to start afresh")
    for k, (a, b) in changed.items():
        log(f"resuming with a changed schedule: {k} {a!r} -> {b!r}")


def restore_model(ckpt: Checkpoint, project: str, build: Callable[[dict], tuple[torch.nn.Module, Any]], *,
                  hint: str) -> tuple[torch.nn.Module, Any]:
    """``(model, model_config)`` rebuilt from ``ckpt`` alone, for training (resume) and evaluation alike.

    ``build(config)`` makes the model and its config from the checkpoint's ``config.json``. A checkpoint of
    another project, or one whose fields or weights this code does not know, is one sentence (``hint`` says
    what to do instead), never a ``KeyError`` or a state-dict traceback."""
    check_project(ckpt, project, hint)
    try:
        model, cfg = build(ckpt.config)
        ckpt.load_weights(model)
    except (TypeError, KeyError, RuntimeError) as err:  # a config field or weight this code does not know
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"{ckpt.path} is not compatible with this version of {project}/ ({first}); "
                        "retrain into a new --out folder") from None
    return model, cfg
