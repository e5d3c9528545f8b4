import pytest
import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from quantization.qlinear import Int8WeightOnlyLinear, W8A8Linear
from quantization.quantize import quantized_layer_bytes, state_bytes


def pair():
    """An nn.Linear and a Conv1D holding the same weights (Conv1D stores the transpose)."""
    torch.manual_seed(0)
    lin = nn.Linear(64, 48)
    conv = Conv1D(48, 64)
    conv.weight.data.copy_(lin.weight.data.t())
    conv.bias.data.copy_(lin.bias.data)
    return lin, conv


def test_linear_and_conv1d_quantize_to_the_same_result():
    lin, conv = pair()
    x = torch.randn(5, 64)
    assert torch.allclose(lin(x), conv(x), atol=1e-6)
    for build in (lambda m: Int8WeightOnlyLinear.from_float(m), lambda m: W8A8Linear.from_float(m, x.abs().max())):
        q_lin, q_conv = build(lin), build(conv)
        assert torch.equal(q_lin(x), q_conv(x))


@pytest.mark.parametrize("per_channel", [True, False])
def test_weight_only_output_is_close_to_fp32(per_channel):
    lin, _ = pair()
    x = torch.randn(8, 64)
    q = Int8WeightOnlyLinear.from_float(lin, per_channel=per_channel)
    assert q.weight_int8.dtype == torch.int8
    rel = (q(x) - lin(x)).norm() / lin(x).norm()
    assert rel < 0.01


def test_w8a8_matches_its_float_emulation():
    lin, _ = pair()
    x = torch.randn(20, 64)
    q = W8A8Linear.from_float(lin, x.abs().max())
    s_x = q.act_scale
    qx = torch.clamp(torch.round(x / s_x), -128, 127)
    w = q.weight_int8_t.float() * q.weight_scale  # (K, N) dequantized
    expected = (qx * s_x) @ w + lin.bias
    assert torch.allclose(q(x), expected, atol=1e-4)
    assert (q(x) - lin(x)).norm() / lin(x).norm() < 0.02


def test_byte_accounting_is_exact_for_a_known_layer():
    lin, _ = pair()  # 48 x 64 weights + 48 bias
    assert state_bytes(lin) == (48 * 64 + 48) * 4
    per_channel = Int8WeightOnlyLinear.from_float(lin)
    # int8 weights + an fp32 scale per row + fp32 bias (symmetric: no zero point stored)
    assert state_bytes(per_channel) == 48 * 64 + 48 * 4 + 48 * 4
    asym = Int8WeightOnlyLinear.from_float(lin, symmetric=False)
    assert state_bytes(asym) == 48 * 64 + 48 * 4 + 48 * 4 + 48 * 4  # + an int32 zero point per row
    per_tensor = Int8WeightOnlyLinear.from_float(lin, per_channel=False)
    assert state_bytes(per_tensor) == 48 * 64 + 4 + 48 * 4
    model = nn.Sequential(per_channel)
    assert quantized_layer_bytes(model, ["0"]) == state_bytes(per_channel)
