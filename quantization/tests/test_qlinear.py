import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from transformers.pytorch_utils import Conv1D

from quantization import int8_kernels
from quantization.int8 import int8_matmul_reference
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


def test_the_kernels_are_built_and_cached_once_per_cpu_instruction_set():
    """-march=native code from an AVX-512 machine dies with SIGILL on an AVX2 one sharing the home directory."""
    from quantization import int8_kernels
    from shared_utils.runtime import read_cpuinfo

    avx2, avx512 = {"flags": "fpu sse4_2 avx2 fma"}, {"flags": "fpu sse4_2 avx2 fma avx512f avx512_vnni"}
    assert int8_kernels.build_name(avx2) != int8_kernels.build_name(avx512)
    same_flags = {"flags": "fpu sse4_2 avx2 fma", "model name": "other"}
    assert int8_kernels.build_name(avx2) == int8_kernels.build_name(same_flags)
    assert int8_kernels.cpu_kernels().__name__ == int8_kernels.build_name(read_cpuinfo())


@pytest.mark.parametrize("dynamic", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_the_fused_dequantize_equals_the_eager_reference(dynamic, bias):
    from quantization import int8_kernels
    from quantization.int8 import quantize
    from quantization.qlinear import fused_forward

    assert int8_kernels.cpu_kernels() is not None  # gcc is part of the development setup: the fast path is tested
    torch.manual_seed(0)
    lin = nn.Linear(64, 48, bias=bias)
    x = torch.randn(37, 64) * 3
    q = W8A8Linear.from_float(lin, None if dynamic else x.abs().max() * 0.8)  # static: some inputs clip
    if not dynamic:
        x[0, :6] = torch.tensor([0.5, 1.5, 2.5, -0.5, -2.5, 500.0]) * float(q.act_scale)  # ties; one clipped
    qx, scales = int8_kernels.quantize_rows(x, None if dynamic else q.act_scale)
    assert torch.equal(qx, quantize(x, q.activation_scale(x)))  # exactly the reference's integers
    assert torch.equal(scales, q.activation_scale(x).expand(37, 1)[:, 0])
    if not dynamic:
        assert qx[0, :6].tolist() == [0, 2, 2, 0, -2, 127]  # half to even, clamped
    fast, ref = fused_forward(q, x), q.eager_forward(x)
    assert fast.dtype == torch.float32 and fast.shape == (37, 48)
    assert torch.allclose(fast, ref, rtol=1e-6, atol=1e-6)  # one fused multiply-add vs two roundings
    assert int8_kernels.fused(x) and not int8_kernels.fused(x.double())


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("width", [1, 15, 16, 67, 1536])
def test_the_fused_quantize_equals_the_reference_at_any_row_width_and_thread_count(width, threads):
    """The kernel runs 16 vector lanes (AVX-512, or AVX2 as two halves) with a scalar tail, and splits rows over
    threads: every width and thread count gives the reference's scales and integers, dynamic (a scale per row)
    and static (one, with clipping), with ties rounded half to even in the vector lanes and in the tail."""
    from quantization import int8_kernels
    from quantization.int8 import choose_qparams, quantize

    torch.manual_seed(width)
    x = torch.randn(300, width) * torch.logspace(-3, 3, 300)[:, None]  # rows from tiny to large
    x[4, -1] = -1e4  # a row's extreme in its last column: the tail after the vector lanes
    x[5, -1] = 2.5 * 0.01  # a tie in the tail for the static scale 0.01: half to even gives 2
    x[6, 0], x[7, 0] = 3.5 * 0.01, -2.5 * 0.01  # ties in the vector lanes where width >= 16: 4 and -2
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        q, scales = int8_kernels.quantize_rows(x, None)
        static_q, static_scales = int8_kernels.quantize_rows(x, torch.tensor(0.01))
    finally:
        torch.set_num_threads(before)
    reference = choose_qparams(x, symmetric=True, axis=0)[0]  # (300, 1)
    assert torch.equal(scales, reference[:, 0]) and torch.equal(q, quantize(x, reference))
    assert torch.equal(static_q, quantize(x, torch.tensor(0.01))) and bool((static_scales == 0.01).all())
    assert static_q[6, 0] == 4 and static_q[7, 0] == -2
    assert static_q[5, -1] == 2 and static_q[4, -1] == -128 and static_q[299].abs().max() == 127  # tie; clipped


def test_dynamic_w8a8_scales_each_row_by_its_own_range():
    lin, _ = pair()
    x = torch.randn(6, 64)
    x[3] *= 100  # one loud token: a static scale would crush the others
    q = W8A8Linear.from_float(lin, None)
    assert q.dynamic and "dynamic" in repr(q)
    assert (q(x) - lin(x)).norm() / lin(x).norm() < 0.02
    quiet = [i for i in range(6) if i != 3]
    assert ((q(x)[quiet] - lin(x)[quiet]).norm() / lin(x)[quiet].norm()) < 0.02


needs_avx2 = pytest.mark.skipif(not int8_kernels.has_avx2(), reason="the int8 GEMM kernel is AVX2 code")


@needs_avx2
@settings(max_examples=60, deadline=None)
@given(m=st.integers(1, 250), k=st.integers(1, 70), n=st.integers(1, 40), threads=st.sampled_from([1, 2]),
       seed=st.integers(0, 2**16))
def test_the_avx2_int8_gemm_gives_the_exact_integers_at_any_shape(m, k, n, threads, seed):
    """6 x 16 register tiles, 96-row blocks split over threads, k in pairs: every remainder (odd K, a partial
    tile, panel or block) and the int8 extremes give the float64 reference's integers."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randint(-128, 128, (m, k), dtype=torch.int8, generator=g)
    b = torch.randint(-128, 128, (k, n), dtype=torch.int8, generator=g)
    a[0, :2], b[:2, 0] = -128, -128  # two products of 16,384 make 32,768, past int16 (vpmaddubsw saturates)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        assert torch.equal(int8_kernels.int8_gemm(a, b), int8_matmul_reference(a, b))
    finally:
        torch.set_num_threads(before)


@needs_avx2
def test_the_avx2_int8_gemm_sums_the_worst_case_over_a_layers_width():
    """Row blocks past 96, panels past 16, and the largest sums a 1,536-wide layer can make (all -128:
    1,536 x 16,384 = 25,165,824, past float32's 2^24 exact integers) stay exact in int32."""
    a = torch.full((200, 1536), -128, dtype=torch.int8)
    a[1::2] = torch.randint(-128, 128, (100, 1536), dtype=torch.int8, generator=torch.Generator().manual_seed(0))
    b = torch.full((1536, 40), -128, dtype=torch.int8)
    out = int8_kernels.int8_gemm(a, b)
    assert out[0, 0] == 1536 * 128 * 128 and torch.equal(out, int8_matmul_reference(a, b))


@needs_avx2
def test_the_instruction_probes_compute_what_they_claim():
    """The bench's hardware ceiling times these loops; their sums over every lane prove each runs its
    iterations on its twelve chains (chain r starts at r in all 8 lanes): f = f * 1 + 0.5 four times gives
    r + 2; c = c + madd(c, 1), with c's int16 pairs (r, 0), doubles c three times, giving 8 r."""
    module = int8_kernels.cpu_kernels()
    assert module.probe_fp32_fma(4, 1.0, 0.5) == 8 * sum(r + 2 for r in range(12))  # 720
    assert module.probe_int16_madd(3, 1) == 8 * sum(8 * r for r in range(12))  # 4,224
    assert module.probe_int16_madd(5, 0) == 8 * sum(range(12)) and module.probe_fp32_fma(0, 2.0, 1.0) == 528


def test_int8_matmul_takes_the_avx2_gemm_only_where_torch_has_no_fast_int8_kernel(monkeypatch):
    """torch._int_mm runs oneDNN's kernels on CPUs with AVX-512 VNNI and a scalar loop elsewhere."""
    for flags, ours in [({"avx2", "fma"}, True), ({"avx2", "avx512f", "avx512_vnni"}, False), ({"sse4_2"}, False)]:
        monkeypatch.setattr(int8_kernels, "cpu_flags", lambda flags=flags: flags)
        int8_kernels.own_int8_gemm.cache_clear()
        assert int8_kernels.own_int8_gemm() is ours
    int8_kernels.own_int8_gemm.cache_clear()


@needs_avx2
def test_the_packed_weight_follows_the_weight_it_was_packed_from():
    """The layer keeps its weight packed for the AVX2 GEMM; loading other weights must not reuse the old pack."""
    from quantization.qlinear import fused_forward, integer_product

    torch.manual_seed(0)
    first, second = W8A8Linear.from_float(nn.Linear(64, 48), None), W8A8Linear.from_float(nn.Linear(64, 48), None)
    q = torch.randint(-128, 128, (37, 64), dtype=torch.int8)
    packed = first.packed_weight()
    assert first.packed_weight() is packed  # kept
    reference = int8_matmul_reference(q, first.weight_int8_t)
    assert torch.equal(int8_kernels.int8_gemm(q, first.weight_int8_t, packed), reference)
    first.load_state_dict(second.state_dict())  # an in-place copy into the same tensor
    assert first.packed_weight() is not packed
    assert "_packed" not in str(first.state_dict().keys())  # derived, never saved
    x = torch.randn(37, 64)
    assert torch.equal(integer_product(first, q), int8_matmul_reference(q, second.weight_int8_t))
    assert torch.allclose(fused_forward(first, x), second.eager_forward(x), rtol=1e-6, atol=1e-6)
