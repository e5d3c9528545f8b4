import pytest
import torch

from quantization.int8 import QMAX, QMIN, choose_qparams, dequantize, int8_matmul, int8_matmul_reference, quantize


def test_worked_example_from_the_docstring():
    x = torch.tensor([-1.0, 0.5, 2.54])
    scale, zp = choose_qparams(x)
    assert scale.item() == pytest.approx(0.02) and zp.item() == 0
    assert quantize(x, scale, zp).tolist() == [-50, 25, 127]


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("axis", [None, 0, 1])
def test_round_trip_error_is_at_most_half_a_step(symmetric, axis):
    torch.manual_seed(0)
    x = torch.randn(16, 32) * torch.linspace(0.1, 5, 32)
    scale, zp = choose_qparams(x, symmetric=symmetric, axis=axis)
    q = quantize(x, scale, zp)
    assert q.dtype == torch.int8
    err = (dequantize(q, scale, zp) - x).abs()
    assert torch.all(err <= scale / 2 + 1e-6)


def test_asymmetric_zero_point_uses_the_whole_range_and_keeps_zero_exact():
    x = torch.linspace(0.0, 2.55, 256)  # non-negative, like a GELU output
    scale, zp = choose_qparams(x, symmetric=False)
    assert scale.item() == pytest.approx(0.01)
    assert zp.item() == QMIN  # 0.0 maps to -128
    q = quantize(x, scale, zp)
    assert q.min().item() == QMIN and q.max().item() == QMAX
    assert dequantize(quantize(torch.tensor([0.0]), scale, zp), scale, zp).item() == 0.0
    # the symmetric grid wastes the negative half: its step is twice as coarse
    assert choose_qparams(x, symmetric=True)[0].item() == pytest.approx(2.55 / 127)


def test_per_channel_beats_per_tensor_on_outlier_rows():
    torch.manual_seed(0)
    w = torch.randn(64, 128) * 0.02
    w[3] *= 100  # one outlier output channel stretches a per-tensor scale for everybody
    errors = {}
    for axis in (None, 0):
        s, z = choose_qparams(w, axis=axis)
        errors[axis] = (dequantize(quantize(w, s, z), s, z) - w).pow(2).mean().item()
    assert errors[0] < errors[None] / 50


def test_int8_matmul_equals_the_exact_reference_and_the_float_product():
    torch.manual_seed(0)
    a = torch.randint(-128, 128, (33, 72), dtype=torch.int8)
    b = torch.randint(-128, 128, (72, 40), dtype=torch.int8)
    fast = int8_matmul(a, b)
    assert fast.dtype == torch.int32
    assert torch.equal(fast, int8_matmul_reference(a, b))
    assert torch.equal(fast.double(), a.double() @ b.double())
