"""Weight-only int8 in ONNX: each quantized layer's weight as int8 codes + ``DequantizeLinear``.

Why this form: OpenVINO reads a constant int8 weight behind a DequantizeLinear as a *compressed weight*
and its CPU plugin runs the layer with int8 weights and activations quantized per call (its dynamic
quantization) — the same arithmetic as modelpress's ``int8-dynamic`` simulation, written from *our*
codes and scales (QAT's learned scales and layers kept float carry over; nothing is re-quantized).
onnxruntime's ``quantize_dynamic`` graph (MatMulInteger + DynamicQuantizeLinear) is not read that way:
OpenVINO runs it in f32 (measured: all 37 MiniLM FullyConnected layers f32).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from modelpress.quantization.modules import _Quantized
from modelpress.quantization.onnx_rewrite import Matched

__all__ = ["to_weight_dequantize"]


def _codes(mt: Matched) -> tuple[np.ndarray, np.ndarray, np.ndarray, int] | str:
    """(int8 codes laid out as the node's initializer, scales, zero points, axis), or why not."""
    m = mt.module
    spec = m.spec
    if spec.bits != 8:
        return f"{spec.bits}-bit weights (only 8-bit codes are written this way)"
    if spec.granularity == "group":
        return "group-wise scales (DequantizeLinear here takes one scale per tensor or channel)"
    q = m.qweight.numpy().astype(np.int8)
    scale = m.scale.numpy().astype(np.float32).reshape(-1)
    zp = m.zero_point.numpy().reshape(-1)
    if zp.min() < -128 or zp.max() > 127:
        return "zero points outside int8"
    if scale.size == 1:  # per-tensor: DequantizeLinear reads a 1-D scale as per-axis, so a 0-d one
        scale, zp = scale.reshape(()), zp.reshape(())
    if mt.op_type == "Conv":
        return q, scale, zp.astype(np.int8), 0
    if m.meta["kind"] != "linear" or q.ndim != 2:
        return f"a {m.meta['kind']} layer"
    # MatMul (and Gemm with transB = 0) hold Wᵀ (K, N): the output channel is axis 1
    return (np.ascontiguousarray(q.T), scale, zp.astype(np.int8), 1) if mt.transposed else (q, scale, zp.astype(np.int8), 0)


def to_weight_dequantize(model: onnx.ModelProto, matched: list[Matched]) -> tuple[onnx.ModelProto, list[str]]:
    """A copy of ``model`` in which every matched 8-bit layer (MatMul / Gemm / Conv whose module is a
    modelpress quantized layer with per-tensor or per-channel scales) reads its weight from int8 codes
    through ``DequantizeLinear`` (opset ≥ 13, per-axis). The dequantized values equal the fp32
    initializer they replace exactly (the initializer was exported from those codes), so the graph
    computes what the float graph did until a runtime fuses the int8 weight into its kernel.

    Returns the new model and the layers left as they were, with why (``"node: reason"``). Raises
    `ValueError` when no layer could be written this way.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    inits = {t.name: t for t in out.graph.initializer}
    new_nodes, left, done = [], [], set()
    for mt in matched:
        if mt.op_type not in ("MatMul", "Gemm", "Conv") or not isinstance(mt.module, _Quantized):
            continue
        if mt.weight in done:
            continue
        got = _codes(mt)
        if isinstance(got, str):
            left.append(f"{mt.node}: {got}")
            continue
        codes, scale, zp, axis = got
        if tuple(codes.shape) != tuple(inits[mt.weight].dims):
            left.append(f"{mt.node}: weight shape {list(inits[mt.weight].dims)} is not the codes' {list(codes.shape)}")
            continue
        done.add(mt.weight)
        out.graph.initializer.remove(inits[mt.weight])
        names = [f"{mt.weight}_quantized", f"{mt.weight}_scale", f"{mt.weight}_zero_point"]
        out.graph.initializer.extend([numpy_helper.from_array(codes, names[0]),
                                      numpy_helper.from_array(scale, names[1]),
                                      numpy_helper.from_array(zp, names[2])])
        new_nodes.append(helper.make_node("DequantizeLinear", names, [mt.weight], axis=axis,
                                          name=f"{mt.weight}_DequantizeLinear"))
    if not new_nodes:
        raise ValueError("no 8-bit per-channel or per-tensor quantized layer was found in the ONNX graph"
                         + (f" ({'; '.join(left)})" if left else ""))
    for node in reversed(new_nodes):  # constants first: the graph stays topologically sorted
        out.graph.node.insert(0, node)
    return out, left
