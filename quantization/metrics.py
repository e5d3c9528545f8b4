"""Classification metrics: accuracy and macro-F1, plain numpy (no scikit-learn needed), on a 0-1 scale."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from shared_utils.errors import UserError


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
