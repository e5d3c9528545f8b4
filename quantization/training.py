"""Fine-tuning the AG News classifier, the full-precision baseline every quantized model is compared with
(``train.py`` is its command line; the demo calls it too).

Resumes from the run folder when it holds a checkpoint (model, optimizer, schedule, RNG and data position). The
best checkpoint is chosen on a selection split carved from the training data; the dev set is logged, never
selected on.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path

import torch

from quantization.config import LABELS, TrainConfig
from quantization.data import collate, encode, evaluate, load_labelled
from quantization.model import build_classifier, classifier_from_checkpoint, tokenizer_files
from shared_utils.checkpoint import check_resume_config, load_resumable
from shared_utils.data import selection_note, selection_split
from shared_utils.loop import TrainingRun, check_run_folder
from shared_utils.runtime import seed_everything

DATA_HINT = ("use --train ../shared/data/agnews/train.csv --dev ../shared/data/agnews/dev.csv "
             "(make quant-bench QUANT_DATA=local)")
SCHEDULE_FIELDS = ("epochs", "lr", "warmup", "time_budget_min", "eval_every")  # may change when resuming


def linear_lr(step: int, peak: float, warmup: int, total: int) -> float:
    """Linear warmup to ``peak`` over ``warmup`` steps, then linear decay to 0 at ``total`` (BERT fine-tuning)."""
    warm = max(1, warmup)
    if step < warm:
        return peak * (step + 1) / warm
    return peak * max(0.0, (total - step) / max(1, total - warm))


def get_lr(step: int, total: int, cfg: TrainConfig) -> float:
    """Linear warmup over ``cfg.warmup`` of the steps (a fraction), then linear decay to zero."""
    return linear_lr(step, cfg.lr, int(cfg.warmup * total), total)


def select_rows_from(records: list, cfg: TrainConfig) -> tuple[list, list]:
    """(training rows, selection rows): distinct texts, stratified by label."""
    return selection_split(records, cfg.select_size, seed=cfg.select_seed, key=lambda e: e.text,
                           stratify=lambda e: e.label)


def train(cfg: TrainConfig, out: Path, device: torch.device) -> dict:
    """Train (or resume) and return the best dev metrics."""
    check_run_folder(out, "quantization")
    seed_everything(cfg.seed)
    train_set = load_labelled(cfg.train, num_labels=len(LABELS), local_hint=DATA_HINT).require("--train")
    dev_set = load_labelled(cfg.dev, num_labels=len(LABELS), local_hint=DATA_HINT).require("--dev") if cfg.dev \
        else None
    print(" | ".join(d.summary() for d in (train_set, dev_set) if d))
    train_rows, select_rows = select_rows_from(train_set.records, cfg)
    if select_rows:
        print(selection_note(len(select_rows), len(train_rows), "rows", cfg.select_size))
    config = {"project": "quantization", **asdict(cfg), "labels": list(LABELS)}
    resume = load_resumable(out)
    if resume is None:
        model, tok = build_classifier(cfg, [e.text for e in train_rows])
    else:
        model, tok = classifier_from_checkpoint(resume, hint=f"{out} holds another project's run: pass a new --out")
        check_resume_config(out, resume.config, config, may_change=SCHEDULE_FIELDS)
    config["hf_config"] = model.config.to_dict()
    model.to(device)
    train_ids = encode(tok, [e.text for e in train_rows], cfg.max_len)
    train_labels = [e.label for e in train_rows]
    dev_rows = (dev_set.records[: cfg.dev_limit or None]) if dev_set else []
    evaluated = {name: (encode(tok, [e.text for e in rows], cfg.max_len), [e.label for e in rows])
                 for name, rows in (("select", select_rows), ("dev", dev_rows)) if rows}

    steps_per_epoch = math.ceil(len(train_ids) / cfg.batch_size)  # the last batch of an epoch may be short
    total = max(1, int(math.ceil(cfg.epochs * steps_per_epoch)))
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    # fused AdamW (one kernel for all parameters) where CUDA has it; the same update, the same optimizer state
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, fused=device.type == "cuda")
    run = TrainingRun(out, config, optimizer=opt, resume=resume, best_key="accuracy", selecting=bool(select_rows),
                      total=total, eval_every=cfg.eval_every, time_budget_min=cfg.time_budget_min, device=device)
    progress = run.progress
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    tok_files = tokenizer_files(tok)  # the tokenizer never changes during training: serialise it once
    while progress.step < total:
        progress.epoch, progress.batch_pos = divmod(progress.step, steps_per_epoch)  # data position = step
        order = torch.randperm(len(train_ids), generator=torch.Generator().manual_seed(cfg.seed + progress.epoch))
        batch_idx = order[progress.batch_pos * cfg.batch_size: (progress.batch_pos + 1) * cfg.batch_size].tolist()
        model.train()
        run.begin_step(get_lr(progress.step, total, cfg))
        loss_sum, step_tokens = 0.0, 0
        micro = math.ceil(len(batch_idx) / cfg.grad_accum)
        for chunk in (batch_idx[m: m + micro] for m in range(0, len(batch_idx), micro)):
            batch = collate([train_ids[i] for i in chunk], tok.pad_token_id, device)
            labels = torch.tensor([train_labels[i] for i in chunk], device=device)
            with autocast:  # each micro-batch weighs by its rows, so a short last one counts right
                loss = model(**batch, labels=labels).loss * (len(chunk) / len(batch_idx))
            run.check_finite(loss)
            loss.backward()
            loss_sum += loss.item()
            step_tokens += int(batch["attention_mask"].sum())
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        due = run.step_done(loss_sum, step_tokens)
        record = {"step": progress.step, "loss": loss_sum, "lr": opt.param_groups[0]["lr"], "ms_per_step": run.step_ms}
        if due:
            results = {name: evaluate(model, ids, labels, tok.pad_token_id, device)
                       for name, (ids, labels) in evaluated.items()}
            for name, r in results.items():
                record.update({f"{name}_{k}": v for k, v in r.items()})
            run.say(f"step {progress.step} | loss {loss_sum:.3f} | lr {record['lr']:.1e} | {run.step_ms:.0f} ms/step | "
                    f"{run.tokens_per_s / 1e3:.1f}k tok/s | " +
                    " | ".join(f"{n} acc {r['accuracy']:.4f}" for n, r in results.items()))
            run.checkpoint(results.get("select") or results.get("dev") or {"accuracy": 0.0}, model,
                           extra_files=tok_files)
        if run.log(record):
            break
    run.close()
    return progress.best
