"""Static int8 in ONNX with the simulation's scope: Q/DQ on the quantized layers' inputs only.

Why not onnxruntime's ``quantize_static`` for OpenVINO: restricted to MatMul it still quantizes the
MatMul *outputs* and hands one shared Q/DQ pair to every consumer of a quantized tensor, so the residual
adds and layer norms of a transformer read rounded activations (measured on MiniLM bbc-news in
OpenVINO: logit cosine 0.965 to fp32). The simulation (`modelpress.quantization.modules._Quantized`)
rounds only what enters each quantized layer. This graph does exactly that, from modelpress's own
numbers: each layer's input goes through ``QuantizeLinear`` → ``DequantizeLinear`` with the calibrated
uint8 scale and zero point (``act_scale``, ``act_zp``) and feeds that layer alone (layers reading the
same tensor with the same grid share one pair: Q, K and V); weights are modelpress's int8 codes behind
``DequantizeLinear`` (`modelpress.quantization.onnx_weight_dq.to_weight_dequantize`). Softmax, layer
norm, GELU, residual adds and the attention matmuls stay float. OpenVINO folds each pair into a
FakeQuantize and runs the layer with its int8 kernels (MiniLM bbc-news: logit cosine 0.99865 to fp32,
at NNCF's int8 latency; docs/bench-runtimes.md). Quantized embedding tables with one 8-bit grid per
row are written the same way (int8 rows behind a per-row ``DequantizeLinear``), which OpenVINO gathers
from its compressed constant, so the file is as small as the artifact (MiniLM's word table is half of
its fp32 file).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from modelpress.quantization.modules import _Quantized
from modelpress.quantization.onnx_rewrite import Matched
from modelpress.quantization.onnx_weight_dq import to_weight_dequantize

__all__ = ["to_static_qdq"]


def _static(mt: Matched) -> bool:
    """A layer whose simulation rounds its input to a calibrated uint8 grid."""
    m = mt.module
    return isinstance(m, _Quantized) and m.act == "static" and 0 <= m.act_zp <= 255 and mt.op_type != "Gather"


def _embeddings(out: onnx.ModelProto, matched: list[Matched]) -> list[str]:
    """Rewrite, in place, each matched 8-bit embedding table with one grid per row as int8 codes +
    ``DequantizeLinear`` (axis 0); the tables left fp32, with why."""
    inits = {t.name: t for t in out.graph.initializer}
    nodes, left = [], []
    for mt in matched:
        m = mt.module
        if mt.op_type != "Gather" or not isinstance(m, _Quantized) or mt.weight not in inits:
            continue
        v = m.qweight.shape[0]
        if m.spec.bits != 8 or m.scale.numel() != v or tuple(inits[mt.weight].dims) != tuple(m.qweight.shape):
            left.append(f"{mt.node}: {m.spec.bits}-bit codes, {m.scale.numel()} scales for {v} rows")
            continue
        zp = m.zero_point.numpy().reshape(-1)
        if zp.min() < -128 or zp.max() > 127:
            left.append(f"{mt.node}: zero points outside int8")
            continue
        out.graph.initializer.remove(inits.pop(mt.weight))
        names = [f"{mt.weight}_quantized", f"{mt.weight}_scale", f"{mt.weight}_zero_point"]
        out.graph.initializer.extend([
            numpy_helper.from_array(m.qweight.numpy().astype(np.int8), names[0]),
            numpy_helper.from_array(m.scale.numpy().astype(np.float32).reshape(-1), names[1]),
            numpy_helper.from_array(zp.astype(np.int8), names[2])])
        nodes.append(helper.make_node("DequantizeLinear", names, [mt.weight], axis=0,
                                      name=f"{mt.weight}_DequantizeLinear"))
    for node in reversed(nodes):  # constants first: the graph stays topologically sorted
        out.graph.node.insert(0, node)
    return left


def to_static_qdq(model: onnx.ModelProto, matched: list[Matched]) -> tuple[onnx.ModelProto, list[str]]:
    """A copy of ``model`` where every matched layer with static activations reads its input through
    uint8 ``QuantizeLinear`` / ``DequantizeLinear`` (per tensor, the simulation's scale and zero point)
    and its weight from int8 codes (per channel or per tensor, as quantized).

    Returns the new model and the layers left as they were, with why (``"node: reason"``): layers whose
    weight cannot be written as int8 codes keep float weights and float inputs (a layer is int8 in both
    or in neither); embedding tables kept fp32 are listed as ``"embedding kept fp32: node: reason"``. Raises `ValueError` when no layer has static activations and int8 codes.
    """
    static = [mt for mt in matched if _static(mt)]
    if not static:
        raise ValueError("no layer with static int8 activations was found in the graph")
    out, left = to_weight_dequantize(model, static)
    not_int8 = {entry.split(":", 1)[0] for entry in left}
    wanted = {mt.node: mt.module for mt in matched if _static(mt) and mt.node not in not_int8}
    if not wanted:
        raise ValueError(f"no layer with static int8 activations has int8 weight codes: {'; '.join(left)}")
    nodes: list[onnx.NodeProto] = []
    pairs: dict[tuple[str, float, int], str] = {}  # (input, scale, zero point) → dequantized name
    for node in out.graph.node:
        module = wanted.get(node.name)
        if module is not None:
            key = (node.input[0], module.act_scale, module.act_zp)
            if key not in pairs:
                base = f"{node.input[0]}_static{len(pairs)}"
                out.graph.initializer.extend([
                    numpy_helper.from_array(np.array(module.act_scale, np.float32), f"{base}_scale"),
                    numpy_helper.from_array(np.array(module.act_zp, np.uint8), f"{base}_zero_point")])
                names = [f"{base}_scale", f"{base}_zero_point"]
                nodes += [helper.make_node("QuantizeLinear", [node.input[0], *names], [f"{base}_q"],
                                           name=f"{base}_QuantizeLinear"),
                          helper.make_node("DequantizeLinear", [f"{base}_q", *names], [f"{base}_dq"],
                                           name=f"{base}_DequantizeLinear")]
                pairs[key] = f"{base}_dq"
            node.input[0] = pairs[key]
        nodes.append(node)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    return out, left + [f"embedding kept fp32: {e}" for e in _embeddings(out, matched)]
