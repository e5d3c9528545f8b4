"""ONNX Runtime as a peer: what people who deploy int8 on CPUs mostly use.

The fp32 classifier is exported with ``torch.onnx.export`` and run by an onnxruntime ``InferenceSession`` on
the CPU, as is (``onnxruntime_fp32``) or after onnxruntime's own dynamic quantization (``onnxruntime_int8``:
int8 weights per tensor, activations quantized at run time, ``onnxruntime.quantization.quantize_dynamic``).
:class:`OrtClassifier` stands where the torch model stood, so the benchmark measures it the same way:
``model(input_ids=..., attention_mask=...).logits``. Its bytes are the ONNX file's initializers; its memory,
held by onnxruntime outside torch's view, is in the process's peak RSS that every method is measured by.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

HEAD_NAMES = ("score", "classifier")  # the head stays out of the layer bytes, as in quantize.py
MATMUL_OPS = ("MatMul", "MatMulInteger", "Gemm", "DynamicQuantizeMatMul")


class _Logits(nn.Module):
    """The classifier as a function of (input_ids, attention_mask) to logits alone: no cache, no output object,
    which the exporter's trace cannot hold."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits


def export(model: nn.Module, path: Path) -> None:
    """The classifier as ONNX, batch and sequence length dynamic (the legacy TorchScript exporter: the model's
    control flow depends on shapes only, which the trace keeps)."""
    ids = torch.ones(2, 8, dtype=torch.long)
    with torch.no_grad():
        torch.onnx.export(_Logits(model.float().cpu().eval()), (ids, torch.ones_like(ids)), str(path),
                          input_names=["input_ids", "attention_mask"], output_names=["logits"],
                          dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                                        "logits": {0: "batch"}}, opset_version=17, dynamo=False)


def initializer_bytes(path: Path) -> tuple[int, int]:
    """(bytes of the weight matrices the backbone's matrix products read, bytes of every initializer) of an ONNX
    file: the first is what ``quantized_layer_bytes`` counts for the torch methods, biases aside."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    arrays = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    read = {name for node in graph.node if node.op_type in MATMUL_OPS
            and not any(head in node.name for head in HEAD_NAMES) for name in node.input}
    matrices = sum(a.nbytes for name, a in arrays.items() if name in read and a.ndim == 2)  # weights, not biases
    return matrices, sum(a.nbytes for a in arrays.values())


class OrtClassifier(nn.Module):
    """An onnxruntime session behind the torch classifier's call; ``int8``: onnxruntime's dynamic quantization."""

    def __init__(self, model: nn.Module, int8: bool):
        super().__init__()
        import onnxruntime as ort

        self._folder = tempfile.TemporaryDirectory(prefix="ort_")  # the files live as long as the session
        path = Path(self._folder.name) / "model.onnx"
        export(model, path)
        if int8:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantized = path.with_name("model.int8.onnx")
            quantize_dynamic(str(path), str(quantized), weight_type=QuantType.QInt8)
            path = quantized
        self.layer_bytes, self.model_bytes = initializer_bytes(path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()  # the same threads as the torch methods
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_) -> SimpleNamespace:
        feeds = {"input_ids": input_ids.cpu().numpy(), "attention_mask": attention_mask.cpu().numpy()}
        return SimpleNamespace(logits=torch.from_numpy(self.session.run(None, feeds)[0]))
