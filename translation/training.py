"""The translation model's training loop (``train.py`` is its command line; the benchmarks and the demo call it).

One loop: label-smoothed cross-entropy (pads ignored), AdamW, linear warmup then inverse-square-root decay,
clipping, token-budget batches, gradient accumulation, bf16 autocast on CUDA, validation loss and greedy
BLEU/chrF++ every ``eval_every`` steps on a selection split carved from the training data (which chooses the
best checkpoint) and on the dev sets (logged, never selected on), best and last checkpoints, exact resume from
the run folder (after a damaged checkpoint, from the newest one that loads).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import asdict, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from shared_utils.batching import EpochBatches, collate, micro_batches
from shared_utils.checkpoint import check_resume_config, load_resumable
from shared_utils.data import selection_note, selection_split
from shared_utils.loop import TrainingRun, dev_pass, start_training
from shared_utils.runtime import inverse_sqrt_lr
from translation.config import ModelConfig, TrainConfig
from translation.data import Encoded, encode_pairs, load_parallel
from translation.decoding import greedy, max_new_tokens
from translation.metrics import translation_scores
from translation.model import PAD, build_model, restore_model
from translation.tokenizer import decode, load_tokenizer, train_tokenizer

DATA_HINT = ("use --train ../shared/data/translation/train.fi-en.tsv --dev ../shared/data/translation/"
             "dev.tatoeba.fi-en.tsv (make translation MT_DATA=local)")
SCHEDULE_FIELDS = ("steps", "lr", "warmup", "time_budget_min", "eval_every", "keep_checkpoints")  # may change on resume


def get_lr(step: int, cfg: TrainConfig) -> float:
    return inverse_sqrt_lr(step, cfg.lr, cfg.warmup)


def loss_fn(logits: torch.Tensor, target: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Label-smoothed cross-entropy over non-pad target tokens: logits (B, S, V), target (B, S)."""
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=PAD,
                           label_smoothing=smoothing)


class SmoothedCrossEntropy(torch.autograd.Function):
    """``F.cross_entropy(logits, target, label_smoothing=eps)`` (the reference, ``loss_fn``) as one autograd node
    whose backward is the closed form, softmax - smoothed one-hot, written into one (N, V) buffer. Torch's
    composite backward adds a zero-filled NLL gradient and the smoothing term's gradient to the log-softmax
    backward: four passes more over the largest activation of the step, each into a fresh (N, V) buffer (on a
    CPU, tens of MB of page faults apiece). The gradient is written over the saved log-probabilities, so a
    second backward through the same graph is refused by autograd's version check instead of going wrong.

    logits (N, V) float, target (N,) with no pads -> the mean loss over the N positions.
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, target: torch.Tensor, eps: float) -> torch.Tensor:
        logp = torch.log_softmax(logits, dim=-1)  # (N, V)
        nll = -logp.gather(1, target[:, None]).squeeze(1)  # (N,)
        ctx.save_for_backward(logp, target)
        ctx.eps = eps
        return ((1 - eps) * nll - eps * logp.mean(dim=-1)).mean()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        logp, target = ctx.saved_tensors
        n, vocab = logp.shape
        scale = grad / n
        # d loss / d logits = (softmax - (1 - eps) one_hot - eps / V) * grad / N
        out = logp.exp_().mul_(scale).sub_(scale * (ctx.eps / vocab))
        out.scatter_add_(1, target[:, None], (-(1 - ctx.eps) * scale).to(out.dtype).expand(n, 1))
        return out, None, None


def optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW as one fused kernel over all parameters: torch's default (multi-tensor) AdamW runs a dozen element-
    wise ops per step, several times the fused one's time on a CPU (a side probe, not a results file)."""
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.98), eps=1e-9,
                             weight_decay=cfg.weight_decay, fused=True)


def training_loss(model, src: torch.Tensor, tgt: torch.Tensor, smoothing: float) -> torch.Tensor:
    """The teacher-forced loss of one batch, tgt (B, S+1) with BOS first: the same value and gradients as
    ``loss_fn(model(src, tgt[:, :-1]), tgt[:, 1:])`` (a test checks it), through the padding-free forward and
    :class:`SmoothedCrossEntropy`."""
    target = tgt[:, 1:]
    keep = target != PAD  # (B, S)
    return SmoothedCrossEntropy.apply(model(src, tgt[:, :-1], keep).float(), target[keep], smoothing)


def validate(model, tok, data: Encoded, refs: list[str], device, batch_tokens: int, max_len: int) -> dict:
    """Dev loss (no smoothing) and greedy BLEU / chrF++ on one dev set."""
    loss, hyps = dev_pass(model, data, batch_tokens, device, pad_id=PAD,
                          loss=lambda src, tgt: loss_fn(model(src, tgt[:, :-1]), tgt[:, 1:], 0.0),
                          hypotheses=lambda src: [decode(tok, h.tokens)
                                                  for h in greedy(model, src, max_new_tokens(src, max_len))])
    scores = translation_scores(hyps, refs)
    return {"loss": loss, "bleu": scores["bleu"].score, "chrf": scores["chrf"].score}


def select_pairs_from(records: list, cfg: TrainConfig) -> tuple[list, list]:
    """(training pairs, selection pairs): the selection split is distinct by Finnish side (case-folded, as
    the shared data was deduplicated), and stratified by length, a proxy for the corpus's two sources
    (short Tatoeba sentences, long news sentences), since the TSV does not name them."""
    return selection_split(records, cfg.select_size, seed=cfg.select_seed, key=lambda p: p.src.casefold(),
                           stratify=lambda p: len(p.src.split()) > 15)


def fresh_tokenizer(train_pairs: list, mcfg: ModelConfig):
    """A tokenizer trained on both sides of the training pairs, and ``mcfg`` at the vocabulary size it reached
    (a small corpus may give fewer merges than asked): what a new run starts from."""
    tok = train_tokenizer((t for p in train_pairs for t in (p.src, p.tgt)), mcfg.vocab_size)
    return tok, replace(mcfg, vocab_size=tok.get_vocab_size())


def train(mcfg: ModelConfig, cfg: TrainConfig, out: Path, device_pref: str = "auto") -> dict:
    rank, world, device, log = start_training(out, cfg.seed, device_pref, "translation")
    main_proc = rank == 0

    train_set = load_parallel(cfg.train, local_hint=DATA_HINT).require("--train")
    dev_sets = {Path(d).name.removesuffix(".tsv").removesuffix(".fi-en"):
                load_parallel(d, local_hint=DATA_HINT).require("--dev") for d in cfg.dev}
    log(train_set.summary(), "|", " | ".join(d.summary() for d in dev_sets.values()))
    train_pairs, select_pairs = select_pairs_from(train_set.records, cfg)
    if select_pairs:
        log(selection_note(len(select_pairs), len(train_pairs), "pairs", cfg.select_size))
    # the requested vocabulary size is kept beside the one the tokenizer reached, to compare flags on resume
    config = {"project": "translation", "model": asdict(mcfg), "train": asdict(cfg),
              "requested_vocab_size": mcfg.vocab_size}
    resume = load_resumable(out, log)
    if resume is not None:
        model, mcfg = restore_model(resume, hint=f"{out} holds another project's run: pass a new --out")
        check_resume_config(out, resume.config, config, may_change=SCHEDULE_FIELDS, ignore=("vocab_size",), log=log)
        tok = load_tokenizer(resume.read_text("tokenizer.json"))
    else:
        tok, mcfg = fresh_tokenizer(train_pairs, mcfg)
        model = build_model(mcfg)
    config["model"] = asdict(mcfg)
    data = encode_pairs(tok, train_pairs, mcfg.max_len)
    log(f"train: {data.truncated} of {len(data.src)} pairs truncated to {mcfg.max_len} tokens")
    select_data = (encode_pairs(tok, select_pairs, mcfg.max_len), [p.tgt for p in select_pairs])
    dev_data = {}
    for name, d in dev_sets.items():
        rows = d.records[: cfg.dev_limit] if cfg.dev_limit else d.records
        dev_data[name] = (encode_pairs(tok, rows, mcfg.max_len), [p.tgt for p in rows])

    model = model.to(device)
    ddp = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    opt = optimizer(model, cfg)
    run = TrainingRun(out, config, optimizer=opt, resume=resume, best_key="bleu", selecting=bool(select_pairs),
                      total=cfg.steps, eval_every=cfg.eval_every, time_budget_min=cfg.time_budget_min, world=world,
                      main_proc=main_proc, device=device, keep_last=cfg.keep_checkpoints)
    progress = run.progress
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    batches = EpochBatches(data, cfg.batch_tokens, cfg.seed, progress.epoch, world)
    while progress.step < cfg.steps:
        idx = batches.take(progress, rank)  # each rank takes its own batch of the same step
        model.train()
        lr = get_lr(progress.step, cfg)
        run.begin_step(lr)
        micro = micro_batches(idx, cfg.grad_accum)
        loss_sum, tgt_tokens = 0.0, 0
        for j, part in enumerate(micro):
            src, tgt = collate(data, part, device)
            sync = ddp.no_sync() if world > 1 and j < len(micro) - 1 else nullcontext()
            with sync, autocast:
                loss = training_loss(ddp, src, tgt, cfg.label_smoothing) / len(micro)
            run.check_finite(loss)
            loss.backward()
            loss_sum += loss.item()
            tgt_tokens += int((tgt[:, 1:] != PAD).sum())
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        due = run.step_done(loss_sum, tgt_tokens)
        record = {"step": progress.step, "loss": loss_sum, "lr": lr, "ms_per_step": run.step_ms,
                  "target_tokens": tgt_tokens}
        if due:
            select = None
            if main_proc:
                evaluated = {**({"select": select_data} if select_pairs else {}), **dev_data}
                results = {name: validate(model, tok, d, refs, device, cfg.batch_tokens, mcfg.max_len)
                           for name, (d, refs) in evaluated.items()}
                for name, r in results.items():
                    record.update({f"{name}/{k}": v for k, v in r.items()})
                select = results.get("select", {"bleu": 0.0, "chrf": 0.0, "loss": 0.0})
                run.say(f"step {progress.step} | loss {loss_sum:.2f} | lr {lr:.1e} | {run.step_ms:.0f} ms/step | "
                        f"{run.tokens_per_s / 1e3:.1f}k tok/s | " +
                        " | ".join(f"{n} bleu {r['bleu']:.1f} chrf {r['chrf']:.1f}" for n, r in results.items()))
            run.checkpoint(select, model, extra_files={"tokenizer.json": tok.to_str()})
        if run.log(record):
            break
    run.close()
    # throughput of the training steps themselves (validation and checkpoints excluded)
    return {"best": progress.best, "step": progress.step, "target_tokens_per_s": run.tokens_per_s}
