"""What an ONNX file really computes: the number format of each weighted layer, read from the graph.

A deployment label must come from the file that ships, not from the recipe that asked for it: a quantizer
handed node names that match nothing writes a float graph without an error (onnxruntime's
``quantize_dynamic`` on a Gemm model did exactly that). `onnx_format` derives the label from the
operators and initializer types, so a report can never say "int8" about a float file.

A *weighted layer* is a MatMul / Gemm / Conv whose weight is a constant (an initializer, or a chain of
Cast / Identity / Transpose / Reshape / DequantizeLinear from one), or one of the integer and n-bit
operators onnxruntime's quantizers write. Activation × activation products (attention) are not layers.
Kinds, from the graph alone:

- ``int4-weight`` / ``int8-weight``: ``MatMulNBits`` (its ``bits``), or a float op whose weight comes
  from ``DequantizeLinear`` of an int8 initializer while its input is not quantized;
- ``int8-static``: ``QLinearConv`` / ``QLinearMatMul``, an integer op fed by ``QuantizeLinear``, or a QDQ
  pair (weight and input both from ``DequantizeLinear``);
- ``int8-dynamic``: ``MatMulInteger`` / ``ConvInteger`` fed by ``DynamicQuantizeLinear``, or
  ``DynamicQuantizeMatMul``;
- ``fp16`` / ``bf16``: a float op whose weight is stored in 16 bits (cast to fp32 at load);
- ``float32``: a float op with an fp32 weight.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelpress.measure.runtime import load_onnx

__all__ = ["KINDS", "LayerFormat", "layer_formats", "onnx_format", "op_counts"]

# Label order: the most compressed first, so "int8-dynamic+float32" reads as "int8, with float layers".
KINDS = ("int4-weight", "int8-weight", "int8-static", "int8-dynamic", "bf16", "fp16", "float32")
_FLOAT_OPS = ("MatMul", "Gemm", "Conv")
_INTEGER_OPS = ("MatMulInteger", "ConvInteger", "MatMulIntegerToFloat")
_STATIC_OPS = ("QLinearConv", "QLinearMatMul", "QGemm")
_PASS_THROUGH = ("Cast", "Identity", "Transpose", "Reshape", "Unsqueeze", "Squeeze", "Flatten")
# ONNX TensorProto element types (onnx.TensorProto.FLOAT ...), spelled out to keep this import-light.
_FP32, _UINT8, _INT8, _FP16, _BF16 = 1, 2, 3, 10, 16


@dataclass(frozen=True)
class LayerFormat:
    """One weighted layer of a graph: its node name, op type and number format (one of `KINDS`)."""

    node: str
    op_type: str
    kind: str


class _Graph:
    """Producers and constants of one graph, to trace where a node's input comes from."""

    def __init__(self, model: Any) -> None:
        self.init_types = {t.name: t.data_type for t in model.graph.initializer}
        self.producer = {o: n for n in model.graph.node for o in n.output}
        for n in model.graph.node:  # a Constant node is an initializer written as a node
            if n.op_type == "Constant":
                for a in n.attribute:
                    if a.name == "value":
                        self.init_types[n.output[0]] = a.t.data_type

    def source(self, name: str) -> tuple[str, Any]:
        """Follow ``name`` up through pass-through ops: ``("const", elem_type)`` for a constant,
        ``("op", node)`` for the first other producer, ``("input", None)`` for a graph input."""
        seen = 0
        while seen < 64:  # a bound against malformed cyclic graphs
            seen += 1
            if name in self.init_types:
                return "const", self.init_types[name]
            node = self.producer.get(name)
            if node is None:
                return "input", None
            if node.op_type in _PASS_THROUGH:
                name = node.input[0]
                continue
            return "op", node
        return "input", None

    def weight_type(self, name: str) -> tuple[int | None, bool]:
        """``(elem_type of the stored weight, whether it passes through DequantizeLinear)``; (None, False)
        when ``name`` is not a constant (an activation)."""
        kind, what = self.source(name)
        if kind == "const":
            return what, False
        if kind == "op" and what.op_type == "DequantizeLinear":
            inner, t = self.source(what.input[0])
            return (t, True) if inner == "const" else (None, False)
        return None, False

    def quantized_by(self, name: str) -> str | None:
        """The op that quantized activation ``name`` (QuantizeLinear / DynamicQuantizeLinear ...), if any."""
        kind, node = self.source(name)
        if kind != "op":
            return None
        if node.op_type == "DequantizeLinear":
            return self.quantized_by(node.input[0]) or "DequantizeLinear"
        return node.op_type if "Quantize" in node.op_type else None


def _kind(node: Any, g: _Graph) -> str | None:
    """The number format of ``node`` if it is a weighted layer, else None."""
    op = node.op_type
    if op == "MatMulNBits":
        bits = next((a.i for a in node.attribute if a.name == "bits"), 4)
        return f"int{bits}-weight"
    if op == "DynamicQuantizeMatMul":
        return "int8-dynamic"
    if op in _STATIC_OPS:
        return "int8-static"
    if op in _INTEGER_OPS:
        if g.weight_type(node.input[1])[0] is None:
            return None  # an activation × activation integer product: not a layer
        return "int8-dynamic" if g.quantized_by(node.input[0]) == "DynamicQuantizeLinear" else "int8-static"
    if op not in _FLOAT_OPS or len(node.input) < 2:
        return None
    elem, dequantized = g.weight_type(node.input[1])
    if elem is None:
        return None
    if dequantized and elem in (_INT8, _UINT8):
        return "int8-static" if g.quantized_by(node.input[0]) else "int8-weight"
    return {_FP16: "fp16", _BF16: "bf16"}.get(elem, "float32")


def _model(model_or_path: Any) -> Any:
    return load_onnx(model_or_path) if isinstance(model_or_path, (str, Path)) else model_or_path


def layer_formats(model_or_path: Any) -> list[LayerFormat]:
    """Every weighted layer of the ONNX model (a path or an ``onnx.ModelProto``), in graph order, with its
    number format. Raises `BadInputError` when a path is missing or not ONNX."""
    model = _model(model_or_path)
    g = _Graph(model)
    out = []
    for node in model.graph.node:
        kind = _kind(node, g)
        if kind is not None:
            out.append(LayerFormat(node.name, node.op_type, kind))
    return out


def onnx_format(model_or_path: Any) -> str:
    """The deployment label of an ONNX model, derived from its graph: the kinds of its weighted layers
    (see `KINDS`) joined by ``+``, most compressed first — ``"int8-dynamic"``, ``"int8-dynamic+float32"``
    (some layers kept float), ``"float32"``; ``"none"`` for a graph without weighted layers."""
    kinds = {lf.kind for lf in layer_formats(model_or_path)}
    return "+".join(k for k in KINDS if k in kinds) or "none"


def op_counts(model_or_path: Any) -> dict[str, int]:
    """How many nodes of each op type the graph holds, most frequent first (ties by name)."""
    counts = Counter(n.op_type for n in _model(model_or_path).graph.node)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
