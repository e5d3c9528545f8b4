"""Summarization metrics, each a thin call into the library the field reports with, so our numbers match papers:
ROUGE-1/2/L/Lsum F1 through ``rouge-score`` (Porter stemming) and BERTScore F1 through ``bert-score``, both x100."""

from __future__ import annotations

import re
from collections.abc import Sequence

from shared_utils.errors import UserError
from shared_utils.hub import MINILM_LAYERS, from_pretrained, minilm_model_dir

ONLINE_BERTSCORE_MODEL = "roberta-large"


def _check_lengths(hyps: Sequence[str], refs: Sequence[str]) -> None:
    if len(hyps) != len(refs):
        raise UserError(f"{len(hyps)} hypotheses but {len(refs)} references")


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
