"""Layer 3 of 3: ``quantize_model(model, method)`` — one entry point for every precision we benchmark.

Scratch methods replace each linear layer (nn.Linear or GPT-2 Conv1D) of the backbone with a module from
``qlinear.py``; bitsandbytes methods replace them with ``bnb.nn.Linear8bitLt`` / ``bnb.nn.Linear4bit``.
The classification head (``score`` / ``classifier``) stays in full precision, as is usual.

The model is modified in place and returned. Memory is counted from the tensors that a ``state_dict``
actually holds (:func:`state_bytes`), bitsandbytes' quantization statistics included.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from shared_utils.errors import UserError

from . import int8_kernels
from .observers import OBSERVERS
from .qlinear import Int8WeightOnlyLinear, W8A8Linear, is_linear, linear_weight

HEAD_NAMES = ("score", "classifier")


@dataclass(frozen=True)
class Method:
    """One precision: what ``quantize_model`` does, resolved once from its name at the command line."""

    name: str
    # "float" | "weight_only" | "w8a8" | "bnb_int8" | "bnb_4bit" | "torch_dynamic" | "torchao" | "onnxruntime"
    kind: str
    dtype: torch.dtype = torch.float32  # "float": the dtype of the whole model
    per_channel: bool = True
    symmetric: bool = True
    observer: str = "minmax"  # w8a8: the calibration observer; "" = dynamic per-row scales, no calibration
    threshold: float = 6.0  # LLM.int8 outlier threshold (0.0 = pure int8)
    quant_type: str = "nf4"
    double_quant: bool = False
    compiled: bool = False  # torchao: the model compiled after quantizing (torch.compile), torchao's CPU recipe
    int8: bool = False  # onnxruntime: its dynamic int8 quantization of the exported model
    cpu_only: bool = False  # torch's quantize_dynamic (fbgemm) and onnxruntime run on the CPU only
    # its int8 matmul is torch._int_mm, a scalar loop on CPUs without AVX-512 VNNI (torchao: on an AVX2 EPYC its
    # dev-set pass had not finished after 13 minutes; fp32's whole run took under 2)
    needs_fast_int_mm: bool = False
    slow_on_cpu: bool = False  # no native CPU matrix products (fp16: ~30x slower than fp32 here)

    @property
    def calibrated(self) -> bool:
        """W8A8 with a static activation scale, which calibration batches set (the dynamic mode needs none)."""
        return self.kind == "w8a8" and bool(self.observer)


# every precision, in the order the tables list them
METHODS: dict[str, Method] = {m.name: m for m in (
    Method("fp32", "float"),
    Method("bf16", "float", dtype=torch.bfloat16),
    Method("fp16", "float", dtype=torch.float16, slow_on_cpu=True),
    Method("int8_weight_per_tensor", "weight_only", per_channel=False),
    Method("int8_weight_per_tensor_asym", "weight_only", per_channel=False, symmetric=False),
    Method("int8_weight_per_channel", "weight_only"),
    Method("int8_weight_per_channel_asym", "weight_only", symmetric=False),
    Method("w8a8", "w8a8", observer="minmax"),
    Method("w8a8_percentile", "w8a8", observer="percentile"),
    Method("w8a8_dynamic", "w8a8", observer=""),  # a scale per token at run time, like the libraries below
    # what a CPU user would pick instead of our W8A8: int8 weights, int8 activations with a scale per token
    # computed at run time (no calibration). torch's own (fbgemm, deprecated but present) and torchao's.
    Method("torch_dynamic_int8", "torch_dynamic", cpu_only=True),
    Method("torchao_int8_dynamic", "torchao", needs_fast_int_mm=True),
    Method("torchao_int8_dynamic_compiled", "torchao", compiled=True, needs_fast_int_mm=True),
    # ONNX Runtime on the CPU (onnx_runtime.py): the exported fp32 model, and its own dynamic int8
    Method("onnxruntime_fp32", "onnxruntime", cpu_only=True),
    Method("onnxruntime_int8", "onnxruntime", int8=True, cpu_only=True),
    Method("bnb_int8", "bnb_int8", threshold=6.0),
    Method("bnb_int8_t0", "bnb_int8", threshold=0.0),
    Method("bnb_nf4", "bnb_4bit", quant_type="nf4"),
    Method("bnb_nf4_dq", "bnb_4bit", quant_type="nf4", double_quant=True),
    Method("bnb_fp4", "bnb_4bit", quant_type="fp4"),
    Method("bnb_fp4_dq", "bnb_4bit", quant_type="fp4", double_quant=True),
)}
LIBRARY_KINDS = ("torch_dynamic", "torchao")


def get_method(name: str) -> Method:
    """The method a command line names; every later step takes the :class:`Method` itself."""
    if name not in METHODS:
        raise UserError(f"--method: unknown method '{name}'; choose from {', '.join(METHODS)}")
    return METHODS[name]


def default_methods(device: torch.device) -> list[Method]:
    """Every method that runs well here: on a GPU all but the CPU-only ones; on a CPU all but fp16 (no native
    fp16 matmuls: pass it explicitly) and, without AVX-512 VNNI, those whose int8 matmul is torch._int_mm."""
    if device.type == "cuda":
        return [m for m in METHODS.values() if not m.cpu_only]
    slow_int_mm = not int8_kernels.torch_int_mm_is_fast()
    return [m for m in METHODS.values() if not m.slow_on_cpu and not (slow_int_mm and m.needs_fast_int_mm)]


def target_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Every linear layer of the backbone, by qualified name (the head excluded)."""
    return {name: m for name, m in model.named_modules()
            if is_linear(m) and name.split(".")[-1] not in HEAD_NAMES}


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)


@torch.no_grad()
def calibrate(model: nn.Module, batches: Iterable[dict], observer: str) -> dict[str, torch.Tensor]:
    """Run ``batches`` (model kwargs) through the fp32 model, observing each target layer's input range."""
    observers = {name: OBSERVERS[observer]() for name in target_layers(model)}
    hooks = [module.register_forward_pre_hook(lambda _m, args, name=name: observers[name].observe(args[0]))
             for name, module in target_layers(model).items()]
    try:
        for batch in batches:
            model(**batch)
    finally:
        for h in hooks:
            h.remove()
    return {name: obs.bound() for name, obs in observers.items()}


def quantize_model(model: nn.Module, spec: Method, *, calibration: Iterable[dict] | None = None,
                   act_bounds: dict[str, torch.Tensor] | None = None) -> nn.Module:
    """Quantize ``model`` in place with ``spec`` (one of :data:`METHODS`) and return it.

    W8A8 needs activation ranges: either ``calibration`` batches (model kwargs) or precomputed ``act_bounds``
    (e.g. when loading a saved checkpoint).
    """
    model.eval()
    if spec.kind == "float":
        return model.to(spec.dtype)
    if spec.kind in LIBRARY_KINDS:
        return _library_int8(model, spec)
    if spec.kind == "onnxruntime":
        if next(model.parameters()).device.type != "cpu":
            raise UserError("the onnxruntime methods run on the CPU only (pass --device cpu)")
        from .onnx_runtime import OrtClassifier

        return OrtClassifier(model, int8=spec.int8)
    dynamic = spec.kind == "w8a8" and not spec.observer
    if spec.kind == "w8a8" and act_bounds is None and not dynamic:
        if calibration is None:
            raise UserError("w8a8 needs calibration batches (or saved activation bounds)")
        act_bounds = calibrate(model, calibration, spec.observer)
    for name, layer in target_layers(model).items():
        if spec.kind == "weight_only":
            new = Int8WeightOnlyLinear.from_float(layer, per_channel=spec.per_channel, symmetric=spec.symmetric)
        elif spec.kind == "w8a8":
            new = W8A8Linear.from_float(layer, None if dynamic else act_bounds[name])
        else:
            new = _bnb_linear(layer, spec)
        _replace(model, name, new)
    return model


def as_nn_linear(layer: nn.Module) -> nn.Linear:
    """An ``nn.Linear`` with ``layer``'s weights (GPT-2's Conv1D included): the libraries take only these."""
    weight, bias = linear_weight(layer)
    new = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device=weight.device)
    new.weight.data.copy_(weight)
    if bias is not None:
        new.bias.data.copy_(bias)
    return new


def _library_int8(model: nn.Module, spec: Method) -> nn.Module:
    """The target layers through torch's ``quantize_dynamic`` (fbgemm, CPU only) or torchao's ``quantize_``
    with ``Int8DynamicActivationInt8WeightConfig``, as their users call them."""
    names = list(target_layers(model))
    for name in names:
        _replace(model, name, as_nn_linear(model.get_submodule(name)))
    if spec.kind == "torch_dynamic":
        if next(model.parameters()).device.type != "cpu":
            raise UserError("torch_dynamic_int8 (quantize_dynamic, fbgemm) runs on the CPU only")
        from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic

        with warnings.catch_warnings():  # the API's own deprecation notice, once per layer
            warnings.simplefilter("ignore")
            return quantize_dynamic(model, {name: default_dynamic_qconfig for name in names}, dtype=torch.qint8,
                                    inplace=True)
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    wanted = set(names)
    quantize_(model, Int8DynamicActivationInt8WeightConfig(), filter_fn=lambda _m, fqn: fqn in wanted)
    if spec.compiled:  # torchao's recommended path: eager, its int8 tensors dispatch op by op
        model.compile()  # in place: the state dict and the module tree stay as they are
    return model


def _bnb_linear(layer: nn.Module, spec: Method) -> nn.Module:
    """A bitsandbytes module holding ``layer``'s weights. bitsandbytes quantizes inside ``.to(device)``, so
    the module is moved to the layer's own device once its float weights are set."""
    # on AVX-512 CPUs bitsandbytes looks for an optional accelerated 4-bit kernel (the `kernels` package) at
    # import and logs a warning when it is absent; its own CPU kernel is used instead, so the line is noise
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    import bitsandbytes as bnb

    weight, bias = linear_weight(layer)
    n_out, n_in = weight.shape
    device = weight.device
    if spec.kind == "bnb_int8":
        # LLM.int8 quantizes fp16 activations, so fp32 inputs are cast; bitsandbytes logs that on every
        # forward pass. It is expected here (and said once, in the README), so the log line is silenced.
        logging.getLogger("bitsandbytes.autograd._functions").setLevel(logging.ERROR)
        new = bnb.nn.Linear8bitLt(n_in, n_out, bias=bias is not None, has_fp16_weights=False,
                                  threshold=spec.threshold)
        new.weight = bnb.nn.Int8Params(weight.float().cpu().clone(), requires_grad=False, has_fp16_weights=False)
    else:
        new = bnb.nn.Linear4bit(n_in, n_out, bias=bias is not None, compute_dtype=torch.float32,
                                compress_statistics=spec.double_quant, quant_type=spec.quant_type)
        new.weight = bnb.nn.Params4bit(weight.float().cpu().clone(), requires_grad=False,
                                       compress_statistics=spec.double_quant, quant_type=spec.quant_type)
    if bias is not None:
        new.bias = nn.Parameter(bias.float().cpu().clone(), requires_grad=False)
    return new.to(device)


def _stored_tensors(value) -> Iterable[torch.Tensor]:
    """The plain tensors a state-dict value holds: itself, the inner tensors of a tensor subclass (torchao's
    ``Int8Tensor`` stores int8 data and scales but reports its float dtype), or those of a packed tuple
    (``quantize_dynamic``'s weight and bias)."""
    if isinstance(value, (tuple, list)):
        for v in value:
            yield from _stored_tensors(v)
    elif isinstance(value, torch.Tensor):
        if type(value) is not torch.Tensor and hasattr(value, "__tensor_flatten__"):
            for inner in value.__tensor_flatten__()[0]:
                yield from _stored_tensors(getattr(value, inner))
        else:
            yield value


def state_bytes(module: nn.Module) -> int:
    """Bytes of every distinct tensor in ``module.state_dict()`` (what a checkpoint of it stores)."""
    seen, total = set(), 0
    for value in module.state_dict().values():
        for t in _stored_tensors(value):
            key = (t.data_ptr(), t.numel(), t.dtype)
            if key not in seen:
                seen.add(key)
                total += t.numel() * t.element_size()
    return total


def quantized_layer_bytes(model: nn.Module, layer_names: Iterable[str]) -> int:
    """Bytes held by the named layers (after quantization, same names as before)."""
    return sum(state_bytes(model.get_submodule(name)) for name in layer_names)


def quantized_bytes(model: nn.Module, layer_names: Iterable[str]) -> tuple[int, int]:
    """(bytes of the named layers, bytes of the whole model) of a model ``quantize_model`` returned: its tensors,
    or for an onnxruntime session the ONNX file's initializers (``onnx_runtime.OrtClassifier``)."""
    from .onnx_runtime import OrtClassifier

    if isinstance(model, OrtClassifier):
        return model.layer_bytes, model.model_bytes
    return quantized_layer_bytes(model, layer_names), state_bytes(model)


# --------------------------------------------------------------------------------------- checkpoints
SCRATCH_KINDS = ("float", "weight_only", "w8a8")


def save_quantized(model: nn.Module, spec: Method, directory: str | Path) -> Path:
    """Save a scratch-quantized model: ``quantized.safetensors`` + ``quantization.json``."""
    from safetensors.torch import save_file

    from shared_utils.checkpoint import atomic_write

    if spec.kind not in SCRATCH_KINDS:
        raise UserError(f"saving is supported for the scratch methods, not '{spec.name}'")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    bounds = {} if not spec.calibrated else {
        k.removesuffix(".act_scale"): float(v) * 127 for k, v in tensors.items() if k.endswith(".act_scale")}
    save_file(tensors, str(directory / "quantized.safetensors"))
    atomic_write(directory / "quantization.json", json.dumps({"method": spec.name, "act_bounds": bounds}, indent=2))
    return directory


def load_quantized(model: nn.Module, directory: str | Path) -> nn.Module:
    """Rebuild the quantized structure on a float ``model`` of the same architecture, then load the tensors."""
    from safetensors.torch import load_file

    directory = Path(directory)
    meta_file = directory / "quantization.json"
    if not meta_file.is_file():
        raise UserError(f"{directory} is not a quantized checkpoint (missing quantization.json)")
    meta = json.loads(meta_file.read_text())
    bounds = {k: torch.tensor(v) for k, v in meta["act_bounds"].items()}
    quantize_model(model, get_method(meta["method"]), act_bounds=bounds if bounds else None)
    model.load_state_dict(load_file(str(directory / "quantized.safetensors")))
    return model
