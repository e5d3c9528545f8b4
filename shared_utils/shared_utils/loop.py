"""The bookkeeping the three training loops share: where a run stands, its checkpoints, its log, its clock.

Each project's ``train()`` keeps its own loop body (batches, loss, validation), which is the project's subject.
What every loop does around that body the same way is here, written once, so a fix reaches all three:
restoring progress on resume, choosing the best checkpoint on the selection split, one ``metrics.jsonl`` row
per step, the progress bar, and the time budget (rank 0's clock under DDP).

    run = TrainingRun(out, config, optimizer=opt, resume=resume, best_key="bleu", selecting=True, total=steps,
                      eval_every=500, time_budget_min=0)
    while run.progress.step < steps:
        run.begin_step(lr)               # the learning rate of every parameter group; the step's clock starts
        ...                              # one optimizer step, the project's own
        due = run.step_done(loss, tokens)  # True every eval_every steps, at the end, and out of time
        record = {"step": run.progress.step, "loss": loss, "ms_per_step": run.step_ms}
        if due:
            run.checkpoint(select_scores, model, extra_files={"tokenizer.json": ...})
        if run.log(record):              # out of time: stop at this checkpoint, resume later
            break
    run.close()
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm import tqdm

from shared_utils.batching import collate, token_batches
from shared_utils.checkpoint import Checkpoint, Progress, open_metrics, restore_progress, save_progress
from shared_utils.errors import UserError
from shared_utils.runtime import out_of_time, seed_everything, setup_distributed


def _written_by(out: Path) -> str | None:
    """The project a run folder's ``config.json`` names (the folder's own, else its checkpoints'), or None."""
    for config in [out / "config.json", *sorted((out / "checkpoints").glob("*/config.json"))]:
        try:
            saved = json.loads(config.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(saved, dict) and isinstance(saved.get("project"), str):
            return saved["project"]
    return None


def check_run_folder(out: Path, project: str) -> None:
    """Refuse an ``--out`` folder that is not ours to write into, before any work: one that is a file, holds
    another project's run, or holds files but no run at all (a ``config.json`` of ``project`` marks one). New,
    empty and our own run folders pass; the folder itself is made later, by :class:`TrainingRun`, so a run
    that fails to start leaves nothing behind."""
    out = Path(out)
    if not out.exists():
        return
    if not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder: pass a folder for the run")
    if not [p for p in out.iterdir() if p.name != ".lock"]:
        return
    written_by = _written_by(out)
    if written_by == project:
        return
    if written_by is not None:
        raise UserError(f"--out {out} is a {written_by} checkpoint's run folder, not a {project} one: pass a new "
                        "--out folder")
    raise UserError(f"--out {out} is not empty and holds no {project} run (no config.json of one): pass a new "
                    "folder, or an empty one, so nothing in it is overwritten")


def start_training(out: Path, seed: int, device_pref: str,
                   project: str) -> tuple[int, int, torch.device, Callable[..., None]]:
    """The first lines of every training run: ``(rank, world, device, log)``. Joins the process group under
    ``torchrun``, checks the run folder (:func:`check_run_folder`) and seeds every generator; ``log`` is
    ``print`` on rank 0 and silent on the other ranks, so a DDP run reads like a single process."""
    rank, world, device = setup_distributed(device_pref)
    check_run_folder(out, project)
    seed_everything(seed)
    return rank, world, device, (print if rank == 0 else (lambda *a, **k: None))


@torch.no_grad()
def dev_pass(model: torch.nn.Module, data, batch_tokens: int, device: torch.device, *,
             loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
             hypotheses: Callable[[torch.Tensor], list[str]], pad_id: int = 0) -> tuple[float, list[str]]:
    """One validation pass of a seq2seq model over ``data``: (mean loss per target token, one hypothesis per row
    in ``data``'s order). ``loss(src, tgt)`` is the batch's mean over non-pad targets (tgt (B, S+1), BOS first);
    ``hypotheses(src)`` decodes the batch. The model is left in eval mode."""
    model.eval()
    total, count, hyps = 0.0, 0, [""] * len(data.src)
    for idx in token_batches(data, batch_tokens, seed=0, epoch=0):
        src, tgt = collate(data, idx, device, pad_id)
        n = int((tgt[:, 1:] != pad_id).sum())
        total += float(loss(src, tgt)) * n
        count += n
        for i, hyp in zip(idx, hypotheses(src)):
            hyps[i] = hyp
    return total / max(count, 1), hyps


try:
    import fcntl
except ImportError:  # Windows: no advisory locks here; runs are not guarded against a second process
    fcntl = None

_HELD: dict[Path, int] = {}  # run folder -> the locked file this process holds while it trains there


def claim_run(out: Path) -> None:
    """Lock ``out`` for this process while it trains there (``out/.lock``, released by :func:`release_run` or
    when the process ends, however it ends). Two processes training one folder would interleave their
    checkpoints and metrics rows, and a resume would take either's; the second one stops with one sentence.
    The same process may claim again (a retry after an error, a test's second run)."""
    out = Path(out).resolve()
    if fcntl is None or out in _HELD:
        return
    fd = os.open(out / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise UserError(f"{out} is being trained by another process: wait for it to end, or pass another --out "
                        "folder") from None
    _HELD[out] = fd


def release_run(out: Path) -> None:
    fd = _HELD.pop(Path(out).resolve(), None)
    if fd is not None:
        os.close(fd)  # closing the file drops its lock


class TrainingRun:
    """One training run in ``out``: ``progress`` (restored from ``resume``), ``config.json``, ``metrics.jsonl``,
    the progress bar and the clock.

    ``best_key`` names the selection metric (higher is better). With ``selecting`` False there is no selection
    split, so every save counts as the best and the last checkpoint is the one kept. Under DDP every rank makes
    one; only ``main_proc`` writes files and prints, and only it holds the folder's lock (:func:`claim_run`).
    """

    def __init__(self, out: Path, config: dict, *, optimizer, resume: Checkpoint | None, best_key: str,
                 selecting: bool, total: int, eval_every: int, time_budget_min: float, world: int = 1,
                 main_proc: bool = True, device: torch.device | str = "cpu", desc: str = "train",
                 keep_last: int = 2):
        self.out, self.config, self.optimizer = Path(out), config, optimizer
        if main_proc:  # the folder is made here, once the data, the model and the resume check have passed
            self.out.mkdir(parents=True, exist_ok=True)
            claim_run(self.out)  # before the first write; the resume read before it only reads published files
        self.best_key, self.selecting, self.total, self.eval_every = best_key, selecting, total, eval_every
        self.time_budget_min, self.world, self.main_proc = time_budget_min, world, main_proc
        self.keep_last = keep_last  # newest checkpoints kept besides the best (more, to average them)
        self.device = torch.device(device)
        self.progress = Progress(best={best_key: -1.0})
        if resume is not None:
            self.progress = restore_progress(resume, optimizer)
            self.say(f"resumed from {resume.path} at step {self.progress.step}")
        if main_proc:
            (self.out / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
        self.metrics = open_metrics(self.out, self.progress.step) if main_proc else None
        self.bar = tqdm(total=total, initial=self.progress.step, desc=desc, dynamic_ncols=True,
                        disable=not main_proc)
        self.start = time.perf_counter()
        self.out_of_time = False
        self.step_start, self.step_ms = self.start, 0.0
        self.train_seconds, self.tokens_seen = 0.0, 0  # optimizer steps only: validation and saving excluded

    def say(self, message: str) -> None:
        """Print on the main process, above the progress bar."""
        if self.main_proc:
            tqdm.write(message)

    def check_finite(self, loss: torch.Tensor) -> None:
        """A NaN or infinite loss stops the run before it reaches the weights, naming the checkpoint to resume."""
        if not torch.isfinite(loss):
            raise UserError(f"loss became {loss.item()} at step {self.progress.step}; the last good checkpoint in "
                            f"{self.out / 'checkpoints'} is intact (lower --lr and rerun to resume)")

    def begin_step(self, lr: float) -> None:
        """Set the step's learning rate on every parameter group and start its clock."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.step_start = time.perf_counter()

    def step_done(self, loss: float, tokens: int = 0) -> bool:
        """Count one optimizer step of this rank's ``tokens``; True when validation and a checkpoint are due:
        every ``eval_every`` steps, at the last step, and when the time budget runs out."""
        self.step_ms = (time.perf_counter() - self.step_start) * 1e3
        self.train_seconds += self.step_ms / 1e3
        self.tokens_seen += tokens * self.world
        self.progress.step += 1
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{loss:.3f}")
        self.out_of_time = out_of_time(self.start, self.time_budget_min, self.world, self.device)
        step = self.progress.step
        return self.out_of_time or step % self.eval_every == 0 or step == self.total

    def checkpoint(self, select: dict | None, model: torch.nn.Module,
                   extra_files: dict[str, str | bytes] | None = None) -> None:
        """Save the step's checkpoint; it becomes the best when ``select`` (the selection split's scores, None on
        ranks that did not validate) beats the best so far."""
        key = self.best_key
        is_best = select is not None and (not self.selecting or select[key] > self.progress.best[key])
        if is_best:
            self.progress.best = {**select, "step": self.progress.step}
        if self.main_proc:
            save_progress(self.out, self.progress, model=model, optimizer=self.optimizer, config=self.config,
                          extra_files=extra_files, is_best=is_best, keep_last=self.keep_last)

    def log(self, record: dict) -> bool:
        """Append the step's row to ``metrics.jsonl``; True when the time budget says stop (after this step's
        checkpoint, so a rerun resumes exactly here)."""
        if self.metrics is not None:
            self.metrics.write(json.dumps(record) + "\n")
            self.metrics.flush()
        if self.out_of_time:
            self.say(f"time budget of {self.time_budget_min} min reached at step {self.progress.step}; "
                     "rerun to resume")
        return self.out_of_time

    @property
    def tokens_per_s(self) -> float | None:
        """Tokens (of every rank) per second of this session's optimizer steps; None when it took none (a run
        resumed at its end), where 0 would read as a measurement."""
        return self.tokens_seen / max(self.train_seconds, 1e-9) if self.tokens_seen else None

    def close(self) -> None:
        self.bar.close()
        if self.metrics is not None:
            self.metrics.close()
        if self.main_proc:
            release_run(self.out)
        if self.world > 1:
            import torch.distributed as dist

            dist.destroy_process_group()
