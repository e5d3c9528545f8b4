"""The classification metrics against known values."""

import pytest

from quantization.metrics import accuracy, macro_f1
from shared_utils.errors import UserError


def test_accuracy_and_macro_f1_known_values():
    preds, labels = [0, 1, 1, 2], [0, 1, 2, 2]
    assert accuracy(preds, labels) == pytest.approx(0.75)
    # per-class F1: 1, 2/3, 2/3
    assert macro_f1(preds, labels, num_labels=3) == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    # an absent class counts as 0, as scikit-learn's zero_division=0 does
    assert macro_f1([0, 0], [0, 0], num_labels=2) == pytest.approx(0.5)
    with pytest.raises(UserError):
        accuracy([1], [1, 2])
