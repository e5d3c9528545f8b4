"""The summarizer's training loop (``train.py`` is its command line; the benchmark and the demo call it too).

One loop for our summarizer, its MoE variants and the architecture peers: label-smoothed cross-entropy plus the
MoE layers' weighted aux losses, AdamW, warmup then cosine (or inverse-square-root) decay, clipping,
token-budget batches, gradient accumulation, bf16 autocast on CUDA, validation (loss and greedy ROUGE on a
selection split carved from ``--train``, which chooses the best checkpoint, and on a dev subset, logged only)
every ``--eval-every`` steps, per-expert load of every MoE layer in ``metrics.jsonl``, atomic best/last
checkpoints and exact resume from the run folder. ``expert_parallel > 1`` under ``torchrun`` shards the experts
over the processes (``expert_parallel.py``).
"""

from __future__ import annotations

import io
import math
import time
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path

import torch
import torch.distributed as dist

from moe_summarization.config import SummarizerConfig, SumTrainConfig
from moe_summarization.data import Encoded, encode_documents, load_documents, token_counts
from moe_summarization.decoding import beam_search
from moe_summarization.expert_parallel import full_state_dict, shard_experts, sync_and_clip
from moe_summarization.metrics import rouge_scores
from moe_summarization.model import build_model, label_smoothed_loss, restore_model
from moe_summarization.routing import balanced_hash_table
from moe_summarization.tokenizer import PAD, decode, load_tokenizer, train_tokenizer
from shared_utils.batching import EpochBatches, collate, micro_batches
from shared_utils.checkpoint import check_resume_config, load_resumable
from shared_utils.data import selection_note, selection_split
from shared_utils.errors import UserError
from shared_utils.loop import TrainingRun, dev_pass, start_training
from shared_utils.runtime import inverse_sqrt_lr, rng_state, set_rng_state

DATA_HINT = ("use --train ../shared/data/xsum-style/train.jsonl --dev ../shared/data/xsum-style/dev.jsonl "
             "(make moe-xsum MOE_DATA=local)")
SCHEDULE_FIELDS = ("steps", "lr", "warmup", "schedule", "time_budget_min", "eval_every")  # may change on resume


def cosine_lr(step: int, peak: float, warmup: int, total: int) -> float:
    """Linear warmup to ``peak``, then half a cosine down towards 0 at step ``total`` (Loshchilov & Hutter 2017).

    For a step budget fixed in advance: the last updates are small, so the weights that get evaluated have
    settled, where the inverse-square-root schedule still takes large steps at the end (in the summarizer
    benchmark two dense seeds differed by 1.42 ROUGE-L under it, 0.30 under this one)."""
    s, warm = step + 1, max(1, warmup)
    if s <= warm:
        return peak * s / warm
    return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, (s - warm) / max(1, total - warm + 1))))


def validate(model, tok, data: Encoded, refs: list[str], device, batch_tokens: int, max_target_len: int) -> dict:
    """Dev loss (no smoothing) and greedy ROUGE on the dev subset."""
    loss, hyps = dev_pass(model, data, batch_tokens, device, pad_id=PAD,
                          loss=lambda src, tgt: label_smoothed_loss(model(src, tgt[:, :-1])[0], tgt[:, 1:], 0.0),
                          hypotheses=lambda src: [decode(tok, best[0].tokens) for best in beam_search(
                              model, src, beam_size=1, max_len=max_target_len, no_repeat_ngram=3)])
    scores = rouge_scores(hyps, refs)
    return {"loss": loss, **{k: scores[k] for k in ("rouge1", "rouge2", "rougeL")}}


def load_summary(stats: list[dict]) -> dict:
    """The per-step MoE record for metrics.jsonl: each layer's tokens per expert, max/mean and drops."""
    return {"moe": [{k: s[k] for k in ("tokens_per_expert", "max_over_mean", "cv", "dropped_fraction")}
                    for s in stats]} if stats else {}


def check_expert_parallel(size: int, world: int, mcfg: SummarizerConfig) -> None:
    """Expert parallelism over every process (P = world); P = 1 is plain DDP."""
    if size != world:
        raise UserError(f"--expert-parallel {size} needs {size} processes (torchrun --nproc_per_node={size}); "
                        f"this run has {world}")
    if mcfg.moe is None:
        raise UserError("--expert-parallel needs an MoE variant; a dense model has no experts to shard")
    if mcfg.moe.num_experts % size:
        raise UserError(f"--moe-num-experts {mcfg.moe.num_experts} cannot be split evenly over --expert-parallel "
                        f"{size}")


def train(mcfg: SummarizerConfig, cfg: SumTrainConfig, out: Path, device_pref: str = "auto") -> dict:
    rank, world, device, log = start_training(out, cfg.seed, device_pref, "moe_summarization")
    main_proc = rank == 0

    train_set = load_documents(cfg.train, local_hint=DATA_HINT).require("--train")
    dev_set = load_documents(cfg.dev, local_hint=DATA_HINT).require("--dev") if cfg.dev else None
    log(" | ".join(d.summary() for d in (train_set, dev_set) if d))
    train_docs, select_docs = selection_split(train_set.records, cfg.select_size, seed=cfg.select_seed,
                                              key=lambda d: d.document, stratify=lambda d: d.source)
    if select_docs:
        log(selection_note(len(select_docs), len(train_docs), "documents", cfg.select_size))
    # the requested vocabulary size is kept beside the one the tokenizer reached, to compare flags on resume
    config = {"project": "moe_summarization", "variant": mcfg.label, "model": asdict(mcfg), "train": asdict(cfg),
              "requested_vocab_size": mcfg.vocab_size}
    resume = load_resumable(out, log)
    if resume is not None:
        model, mcfg = restore_model(resume, hint=f"{out} holds another project's run: pass a new --out")
        check_resume_config(out, resume.config, config, may_change=SCHEDULE_FIELDS,
                            ignore=("vocab_size", "moe.hash_vocab_size"), log=log)
        tok = load_tokenizer(resume.read_text("tokenizer.json"))
    else:
        tok = train_tokenizer((t for d in train_docs for t in (d.document, d.summary)), mcfg.vocab_size,
                              mcfg.lowercase)
        mcfg = mcfg.with_vocab_size(tok.get_vocab_size())
        model = build_model(mcfg)
    config["model"] = asdict(mcfg)
    data = encode_documents(tok, train_docs, mcfg.max_source_len, mcfg.max_target_len)
    log(f"train: {data.truncated} of {len(data.src)} documents truncated to {mcfg.max_source_len} tokens")
    dev_rows = (dev_set.records[: cfg.dev_limit or None]) if dev_set else []
    evaluated = {name: (encode_documents(tok, rows, mcfg.max_source_len, mcfg.max_target_len),
                        [d.summary for d in rows])
                 for name, rows in (("select", select_docs), ("dev", dev_rows)) if rows}

    model = model.to(device)
    if mcfg.moe is not None and mcfg.moe.router == "hash" and resume is None:  # balanced on this corpus's tokens
        model.set_hash_table(balanced_hash_table(mcfg.vocab_size, mcfg.moe.num_experts,
                                                 counts=token_counts(data, mcfg.vocab_size)).to(device))
    sharded = cfg.expert_parallel > 1
    if sharded:  # experts split over the ranks; the rest replicated and averaged by sync_and_clip, not DDP
        check_expert_parallel(cfg.expert_parallel, world, mcfg)
        full = build_model(mcfg)  # the single-process layout every checkpoint is saved in
        model = shard_experts(model)
    # an expert that received no token in a step has no gradient: DDP must not wait for it
    ddp = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=mcfg.moe is not None) \
        if world > 1 and not sharded else model
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.98), eps=1e-9)
    run = TrainingRun(out, config, optimizer=opt, resume=resume, best_key="rougeL", selecting=bool(select_docs),
                      total=cfg.steps, eval_every=cfg.eval_every, time_budget_min=cfg.time_budget_min, world=world,
                      main_proc=main_proc, device=device, desc=f"train {mcfg.label}")
    progress = run.progress
    if resume is not None and sharded:  # each rank's own optimizer moments and RNG, saved beside the checkpoint
        shard = resume.path / f"rank{rank}.pt"
        if not shard.is_file():
            raise UserError(f"{shard} is missing, so rank {rank} cannot resume its experts' optimizer state; "
                            "resume from a complete checkpoint, or pass a new --out")
        own = torch.load(io.BytesIO(shard.read_bytes()), weights_only=False)
        opt.load_state_dict(own["optimizer"])
        set_rng_state(own["rng"])
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()

    def checkpoint(select: dict | None) -> None:
        """Save; sharded, first gather the experts into the single-process layout and every rank's optimizer
        state (every rank takes part)."""
        extra = {"tokenizer.json": tok.to_str()}
        saved = model
        if sharded:
            full.load_state_dict(full_state_dict(model))
            saved = full
            mine = io.BytesIO()
            torch.save({"optimizer": opt.state_dict(), "rng": rng_state()}, mine)
            shards = [None] * world
            dist.all_gather_object(shards, mine.getvalue())
            extra.update({f"rank{r}.pt": blob for r, blob in enumerate(shards)})
        run.checkpoint(select, saved, extra_files=extra)

    batches = EpochBatches(data, cfg.batch_tokens, cfg.seed, progress.epoch, world)
    while progress.step < cfg.steps:
        idx = batches.take(progress, rank)  # each rank takes its own batch of the same step
        model.train()
        lr = (cosine_lr(progress.step, cfg.lr, cfg.warmup, cfg.steps) if cfg.schedule == "cosine"
              else inverse_sqrt_lr(progress.step, cfg.lr, cfg.warmup))
        run.begin_step(lr)
        micro = micro_batches(idx, cfg.grad_accum)
        loss_sum, aux_sum, tgt_tokens, stats = 0.0, 0.0, 0, []
        for j, part in enumerate(micro):
            src, tgt = collate(data, part, device)
            sync = ddp.no_sync() if world > 1 and not sharded and j < len(micro) - 1 else nullcontext()
            with sync, autocast:
                logits, aux, stats = ddp(src, tgt[:, :-1])
                loss = label_smoothed_loss(logits, tgt[:, 1:], cfg.label_smoothing)
                total = (loss + aux) / len(micro)
            run.check_finite(total)
            total.backward()
            loss_sum += loss.item() / len(micro)
            aux_sum += float(aux.detach()) / len(micro)
            tgt_tokens += int((tgt[:, 1:] != PAD).sum())
        if sharded:
            sync_and_clip(model, cfg.clip)
        else:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        due = run.step_done(loss_sum, tgt_tokens)
        record = {"step": progress.step, "loss": loss_sum, "aux_loss": aux_sum, "lr": lr, "ms_per_step": run.step_ms,
                  "target_tokens": tgt_tokens, **load_summary(stats)}
        if due:
            select = None
            if main_proc or sharded:  # a sharded model needs every rank in every forward pass
                results = {name: validate(model, tok, d, refs, device, cfg.batch_tokens, mcfg.max_target_len)
                           for name, (d, refs) in evaluated.items()}
                for name, r in results.items():
                    record.update({f"{name}/{k}": v for k, v in r.items()})
                # without a split, only "every save" reads it
                select = results.get("select") or results.get("dev") or {"rougeL": 0.0}
                run.say(f"step {progress.step} | loss {loss_sum:.2f} | lr {lr:.1e} | {run.step_ms:.0f} ms/step | "
                        f"{run.tokens_per_s / 1e3:.1f}k tok/s | " +
                        " | ".join(f"{n} loss {r['loss']:.2f} rouge1 {r['rouge1']:.1f} rougeL {r['rougeL']:.1f}"
                                   for n, r in results.items()))
            checkpoint(select)
        if run.log(record):
            break
    run.close()
    return {"best": progress.best, "step": progress.step, "seconds": time.perf_counter() - run.start,
            "target_tokens_per_s": run.tokens_per_s}
