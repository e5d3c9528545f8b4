"""Summarizing with a trained checkpoint and scoring summaries, for every caller (eval.py, the demo, the
benchmark, the baselines): rebuild the model from a checkpoint alone, beam-search summaries in token-budget
batches, the lead-1 baseline, and ROUGE / BERTScore per document and per corpus."""

from __future__ import annotations

from pathlib import Path

import torch

from moe_summarization.config import SummarizerConfig
from moe_summarization.data import Doc, encode_documents
from moe_summarization.decoding import beam_search
from moe_summarization.metrics import bertscore_per_item, rouge_per_item, split_sentences
from moe_summarization.model import restore_model
from moe_summarization.tokenizer import decode, load_tokenizer
from shared_utils.batching import collate, token_batches
from shared_utils.checkpoint import load_best
from shared_utils.errors import UserError
from shared_utils.hub import hub_reachable, offline_requested


def default_bertscore_model() -> str:
    """roberta-large (what papers report) when the hub can be reached, else the offline MiniLM package."""
    return "roberta-large" if not offline_requested() and hub_reachable() else "minilm"


def lead1(document: str) -> str:
    """The first sentence (first line for line-broken documents): the classic extractive baseline."""
    first_line = document.strip().split("\n", 1)[0]
    sentences = split_sentences(first_line)
    return sentences[0] if sentences else first_line


def summary_item_scores(preds: list[str], refs: list[str], bertscore_model: str) -> dict[str, list[float]]:
    """ROUGE-1/2/L/Lsum and BERTScore F1 of every document (x100): what the paired bootstrap resamples."""
    return {**rouge_per_item(preds, refs), "bertscore_f1": bertscore_per_item(preds, refs, model=bertscore_model)}


def summary_metrics(preds: list[str], refs: list[str], bertscore_model: str) -> dict[str, float]:
    """The corpus scores: the mean of :func:`summary_item_scores` over the documents."""
    return {k: sum(v) / max(len(v), 1) for k, v in summary_item_scores(preds, refs, bertscore_model).items()}


def load_summarizer(path: str | Path, device: torch.device):
    """(model, tokenizer, config) from a run folder's best (else latest) checkpoint, or a checkpoint folder."""
    ckpt = load_best(path)
    model, cfg = restore_model(ckpt)
    if not (ckpt.path / "tokenizer.json").is_file():
        raise UserError(f"{ckpt.path} has no tokenizer.json, so it cannot summarize; retrain into a new --out")
    return model.to(device).eval(), load_tokenizer(ckpt.read_text("tokenizer.json")), cfg


def summarize(model, tok, cfg: SummarizerConfig, docs: list[Doc], device, *, beam_size: int = 4,
              length_penalty: float = 1.0, min_len: int = 0, no_repeat_ngram: int = 3,
              batch_tokens: int = 8000) -> list[str]:
    """Beam-search summaries in input order (documents truncated to the model's max_source_len)."""
    data = encode_documents(tok, docs, cfg.max_source_len, cfg.max_target_len)
    out = [""] * len(docs)
    for idx in token_batches(data, max(batch_tokens // beam_size, cfg.max_source_len + cfg.max_target_len),
                             seed=0, epoch=0):
        src, _ = collate(data, idx, device)
        found = beam_search(model, src, beam_size=beam_size, length_penalty=length_penalty, min_len=min_len,
                            max_len=cfg.max_target_len, no_repeat_ngram=no_repeat_ngram)
        for i, hyps in zip(idx, found):
            out[i] = decode(tok, hyps[0].tokens)
    return out
