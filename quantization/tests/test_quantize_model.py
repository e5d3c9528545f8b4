import pytest
import torch

from quantization.quantize import (
    METHODS,
    get_method,
    load_quantized,
    quantize_model,
    save_quantized,
    state_bytes,
    target_layers,
)
from shared_utils.errors import UserError


@pytest.mark.parametrize("method", ["int8_weight_per_channel", "int8_weight_per_tensor", "w8a8", "w8a8_dynamic",
                                    "w8a8_percentile", "bnb_int8", "bnb_int8_t0", "bnb_nf4", "bnb_fp4_dq"])
def test_quantized_tiny_gpt2_logits_stay_close_to_fp32(tiny_gpt2, batch, method):
    with torch.no_grad():
        ref = tiny_gpt2(**batch).logits
        names = list(target_layers(tiny_gpt2))
        model = quantize_model(tiny_gpt2, METHODS[method], calibration=[batch])
        out = model(**batch).logits
    assert type(model.get_submodule(names[0])).__name__ != "Conv1D"  # really replaced
    assert model.score.__class__.__name__ == "Linear"  # the head stays fp32
    tolerance = 0.25 if METHODS[method].kind == "bnb_4bit" else 0.05
    assert (out - ref).norm() / ref.norm() < tolerance


def test_bnb_modules_run_on_cpu_and_store_quantized_weights(tiny_gpt2, batch):
    import bitsandbytes as bnb

    fp32_bytes = state_bytes(tiny_gpt2)
    model = quantize_model(tiny_gpt2, METHODS["bnb_nf4"])
    layer = model.transformer.h[0].attn.c_attn
    assert isinstance(layer, bnb.nn.Linear4bit) and layer.weight.dtype == torch.uint8
    assert model(**batch).logits.shape == (4, 4)
    assert state_bytes(model) < fp32_bytes


def test_save_and_load_round_trip(tiny_gpt2, batch, tmp_path):
    from transformers import GPT2ForSequenceClassification

    for method in ("int8_weight_per_channel", "w8a8"):
        fresh = GPT2ForSequenceClassification(tiny_gpt2.config).eval()
        fresh.load_state_dict(tiny_gpt2.state_dict())
        quantized = quantize_model(fresh, METHODS[method], calibration=[batch])
        save_quantized(quantized, METHODS[method], tmp_path / method)
        other = GPT2ForSequenceClassification(tiny_gpt2.config).eval()  # different random weights
        loaded = load_quantized(other, tmp_path / method)
        with torch.no_grad():
            assert torch.equal(loaded(**batch).logits, quantized(**batch).logits)


def test_errors_are_clear(tiny_gpt2, tmp_path):
    with pytest.raises(UserError, match="unknown method 'int3'"):
        get_method("int3")
    with pytest.raises(UserError, match="w8a8 needs calibration"):
        quantize_model(tiny_gpt2, METHODS["w8a8"])
    with pytest.raises(UserError, match="not a quantized checkpoint"):
        load_quantized(tiny_gpt2, tmp_path)
    assert {"fp32", "int8_weight_per_tensor", "int8_weight_per_channel", "w8a8", "bnb_int8", "bnb_nf4",
            "bnb_fp4"} <= set(METHODS)


def test_real_pretrained_minilm_quantizes_with_small_error():
    """The packaged MiniLM (BERT, real pretrained weight distributions) through the same entry point."""
    from quantization.config import make_config
    from quantization.model import build_classifier

    torch.manual_seed(0)
    model, tok = build_classifier(make_config("minilm"))
    model.eval()
    batch = dict(tok(["Stocks rallied on Wall Street.", "The striker scored twice."], padding=True,
                     return_tensors="pt"))
    with torch.no_grad():
        ref = model.bert(**batch).last_hidden_state
        quantize_model(model, METHODS["int8_weight_per_channel"])
        out = model.bert(**batch).last_hidden_state
    assert len(target_layers(model)) == 0  # every backbone linear was replaced
    assert (out - ref).norm() / ref.norm() < 0.05  # ~3% after six layers of int8 weights


def test_torchao_is_also_measured_on_its_recommended_compiled_path(tiny_gpt2):
    """torchao's CPU recipe compiles the model after ``quantize_``: the compiled row compiles in place (the module
    tree and the state dict stay as the byte accounting reads them), the eager one does not."""
    import copy

    eager = quantize_model(copy.deepcopy(tiny_gpt2), METHODS["torchao_int8_dynamic"])
    compiled = quantize_model(tiny_gpt2, METHODS["torchao_int8_dynamic_compiled"])
    assert eager._compiled_call_impl is None and compiled._compiled_call_impl is not None
    assert list(compiled.state_dict()) == list(eager.state_dict())
    assert METHODS["torchao_int8_dynamic_compiled"].kind == "torchao"


def test_onnxruntime_runs_the_exported_model_with_the_torch_logits(tiny_gpt2):
    """The export keeps the function: fp32 logits equal torch's on a padded batch of other shapes than the
    trace's; onnxruntime's int8 stays close and its matrix weights take a quarter of the bytes."""
    import copy

    ids = torch.randint(1, 100, (5, 12), generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(ids)
    mask[1, 7:], mask[3, 4:] = 0, 0  # padded rows: the last real token is pooled
    ids = ids.masked_fill(mask == 0, 0)
    with torch.no_grad():
        ref = tiny_gpt2(input_ids=ids, attention_mask=mask).logits
    fp32 = quantize_model(copy.deepcopy(tiny_gpt2), METHODS["onnxruntime_fp32"])
    int8 = quantize_model(copy.deepcopy(tiny_gpt2), METHODS["onnxruntime_int8"])
    assert torch.allclose(fp32(input_ids=ids, attention_mask=mask).logits, ref, atol=1e-5)
    assert (int8(input_ids=ids, attention_mask=mask).logits - ref).norm() / ref.norm() < 0.1
    assert int8.layer_bytes < 0.3 * fp32.layer_bytes and fp32.layer_bytes == state_bytes_of_matrices(tiny_gpt2)


def state_bytes_of_matrices(model) -> int:
    """fp32 bytes of the backbone's linear weights (GPT-2's Conv1D), biases left out: what ONNX's MatMuls read."""
    return sum(m.weight.numel() * 4 for m in target_layers(model).values())
