"""Fine-tune a classifier on AG News (4 classes): the full-precision baseline every quantized model is
compared with.

    python quantization/train.py --preset gpt2-large --out runs/gpt2-large          # GPU + hub (users' default)
    python quantization/train.py --preset minilm --out runs/minilm                  # offline, pretrained MiniLM
    python quantization/train.py --preset tiny --out runs/tiny                      # offline, GPT-2 from scratch
    python quantization/train.py --preset gpt2-large --model /path/to/gpt2-large --train my.csv --dev my_dev.csv

Resumes from ``--out`` when it holds a checkpoint (model, optimizer, schedule, RNG and data position).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm import tqdm

from quantization.config import LABELS, PRESETS, TrainConfig, make_config
from quantization.model import build_classifier, classifier_from_checkpoint, tokenizer_files
from shared_utils.checkpoint import load_latest, mark_best, save_checkpoint
from shared_utils.data import load_labelled
from shared_utils.errors import UserError, cli_main
from shared_utils.metrics import accuracy, macro_f1
from shared_utils.runtime import pick_device, rng_state, seed_everything, set_rng_state

DATA_HINT = "use --train ../shared/data/agnews/train.csv --dev ../shared/data/agnews/dev.csv (make QUANT_DATA=local)"


def get_lr(step: int, total: int, cfg: TrainConfig) -> float:
    """Linear warmup over ``cfg.warmup`` of the steps, then linear decay to zero."""
    warm = max(1, int(cfg.warmup * total))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    return cfg.lr * max(0.0, (total - step) / max(1, total - warm))


def encode(tok, texts: list[str], max_len: int) -> list[list[int]]:
    """Token ids per text, truncated to ``max_len`` (special tokens included where the model adds them)."""
    return tok(texts, truncation=True, max_length=max_len)["input_ids"]


def collate(ids: list[list[int]], pad_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Right-pad a list of id lists to the longest: input_ids and attention_mask, each (B, S)."""
    width = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, x in enumerate(ids):
        input_ids[i, : len(x)] = torch.tensor(x)
        mask[i, : len(x)] = 1
    return {"input_ids": input_ids.to(device), "attention_mask": mask.to(device)}


@torch.no_grad()
def predict(model, ids: list[list[int]], pad_id: int, device: torch.device, batch_size: int = 64) -> list[int]:
    """Argmax class per example; batches sorted by length so little padding is computed."""
    model.eval()
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    preds = [0] * len(ids)
    for start in range(0, len(order), batch_size):
        chunk = order[start: start + batch_size]
        logits = model(**collate([ids[i] for i in chunk], pad_id, device)).logits
        for i, p in zip(chunk, logits.argmax(-1).tolist()):
            preds[i] = p
    return preds


def evaluate(model, ids, labels, pad_id, device) -> dict[str, float]:
    preds = predict(model, ids, pad_id, device)
    return {"accuracy": accuracy(preds, labels), "macro_f1": macro_f1(preds, labels, len(LABELS))}


def train(cfg: TrainConfig, out: Path, device: torch.device) -> dict:
    """Train (or resume) and return the best dev metrics."""
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.seed)
    train_set = load_labelled(cfg.train, num_labels=len(LABELS), local_hint=DATA_HINT)
    dev_set = load_labelled(cfg.dev, num_labels=len(LABELS), local_hint=DATA_HINT)
    print(train_set.summary(), "|", dev_set.summary())
    resume = load_latest(out)
    if resume is None:
        model, tok = build_classifier(cfg, [e.text for e in train_set])
    else:
        model, tok = classifier_from_checkpoint(resume)
    model.to(device)
    train_ids = encode(tok, [e.text for e in train_set], cfg.max_len)
    train_labels = [e.label for e in train_set]
    dev_rows = dev_set.records[: cfg.dev_limit] if cfg.dev_limit else dev_set.records
    dev_ids, dev_labels = encode(tok, [e.text for e in dev_rows], cfg.max_len), [e.label for e in dev_rows]

    steps_per_epoch = len(train_ids) // cfg.batch_size
    total = max(1, int(math.ceil(cfg.epochs * steps_per_epoch)))
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    step, best = 0, {"accuracy": -1.0}
    if resume is not None:
        opt.load_state_dict(resume.state["optimizer"])
        set_rng_state(resume.state["rng"])
        step, best = resume.state["step"], resume.state["best"]
        print(f"resumed from {resume.path} at step {step}")
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    micro = cfg.batch_size // cfg.grad_accum
    metrics_file = (out / "metrics.jsonl").open("a", encoding="utf-8")
    config_dict = {**asdict(cfg), "hf_config": model.config.to_dict(), "labels": list(LABELS)}
    tok_files = tokenizer_files(tok)  # the tokenizer never changes during training: serialise it once
    start, tokens = time.perf_counter(), 0

    def checkpoint(tag_metrics: dict | None) -> None:
        nonlocal best
        tag = f"step_{step:08d}"
        is_best = tag_metrics is not None and tag_metrics["accuracy"] > best["accuracy"]
        if is_best:
            best = {**tag_metrics, "step": step}
        state = {"optimizer": opt.state_dict(), "rng": rng_state(), "step": step, "best": best}
        save_checkpoint(out, tag, model=model, state=state, config=config_dict, extra_files=tok_files)
        if is_best:
            mark_best(out, tag)

    bar = tqdm(total=total, initial=step, desc="train", dynamic_ncols=True)
    while step < total:
        epoch, pos = divmod(step, steps_per_epoch)
        order = torch.randperm(len(train_ids), generator=torch.Generator().manual_seed(cfg.seed + epoch))
        batch_idx = order[pos * cfg.batch_size: (pos + 1) * cfg.batch_size].tolist()  # data position = step
        model.train()
        for group in opt.param_groups:
            group["lr"] = get_lr(step, total, cfg)
        t0 = time.perf_counter()
        loss_sum = 0.0
        for m in range(cfg.grad_accum):
            chunk = batch_idx[m * micro: (m + 1) * micro]
            batch = collate([train_ids[i] for i in chunk], tok.pad_token_id, device)
            labels = torch.tensor([train_labels[i] for i in chunk], device=device)
            with autocast:
                loss = model(**batch, labels=labels).loss / cfg.grad_accum
            if not torch.isfinite(loss):
                raise UserError(f"loss became {loss.item()} at step {step}; the last good checkpoint in "
                                f"{out / 'checkpoints'} is intact (lower --lr and resume)")
            loss.backward()
            loss_sum += loss.item()
            tokens += int(batch["attention_mask"].sum())
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        ms = (time.perf_counter() - t0) * 1e3
        record = {"step": step, "loss": loss_sum, "lr": opt.param_groups[0]["lr"], "ms_per_step": ms}
        bar.update(1)
        bar.set_postfix(loss=f"{loss_sum:.3f}")
        out_of_time = cfg.time_budget_min and (time.perf_counter() - start) / 60 >= cfg.time_budget_min
        if step % cfg.eval_every == 0 or step == total or out_of_time:
            dev = evaluate(model, dev_ids, dev_labels, tok.pad_token_id, device)
            record.update({f"dev_{k}": v for k, v in dev.items()})
            elapsed = time.perf_counter() - start
            tqdm.write(f"step {step} | loss {loss_sum:.3f} | lr {record['lr']:.1e} | {ms:.0f} ms/step | "
                       f"{tokens / elapsed / 1e3:.1f}k tok/s | dev acc {dev['accuracy']:.4f}")
            checkpoint(dev)
        metrics_file.write(json.dumps(record) + "\n")
        metrics_file.flush()
        if out_of_time:
            tqdm.write(f"time budget of {cfg.time_budget_min} min reached at step {step}; rerun to resume")
            break
    bar.close()
    metrics_file.close()
    return best


def parse_args(argv: list[str] | None) -> tuple[TrainConfig, Path, str]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="gpt2-large", choices=tuple(PRESETS))
    p.add_argument("--out", type=Path, required=True, help="run folder (checkpoints, metrics.jsonl)")
    p.add_argument("--device", default="auto")
    for name, kind in (("model", str), ("train", str), ("dev", str), ("max_len", int), ("batch_size", int),
                       ("grad_accum", int), ("epochs", float), ("lr", float), ("seed", int), ("eval_every", int),
                       ("dev_limit", int), ("time_budget_min", float)):
        p.add_argument(f"--{name.replace('_', '-')}", type=kind, default=None)
    args = vars(p.parse_args(argv))
    preset, out, device = args.pop("preset"), args.pop("out"), args.pop("device")
    return make_config(preset, **args), out, device


@cli_main
def main(argv: list[str] | None = None) -> None:
    cfg, out, device = parse_args(argv)
    out.mkdir(parents=True, exist_ok=True)  # the resolved config sits next to the checkpoints
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2), encoding="utf-8")
    best = train(cfg, out, pick_device(device))
    print(json.dumps({"best": best, "run": str(out)}))


if __name__ == "__main__":
    main()
