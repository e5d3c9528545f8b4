"""Translation metrics, each a thin call into sacrebleu so our numbers match papers: BLEU, chrF++ and TER, each
with its signature, on sacrebleu's 0-100 scale."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shared_utils.errors import UserError


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
