"""Graph surgery on the exported fp32 ONNX model: find our quantized layers, write 16-bit and n-bit forms.

The exporter renames and transposes weights (a Linear on 3-D input becomes MatMul with ``Wᵀ`` under a
generated name), so layers are matched to nodes *by value*: a node's weight initializer equals the
module's dequantized weight exactly (on-grid values survive export bit for bit).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from modelpress.quantization.modules import _Half, _Quantized

__all__ = ["Matched", "gemm_to_matmul", "match_layers", "to_fp16_weights", "to_matmul_nbits"]


@dataclass(frozen=True)
class Matched:
    """An ONNX node computing one of our modules: node name, op type, weight initializer, module."""

    node: str
    op_type: str
    weight: str
    module_name: str
    module: nn.Module
    transposed: bool  # the initializer holds Wᵀ (MatMul, or Gemm with transB = 0)


def _inits(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    return {t.name: t for t in model.graph.initializer}


def _folded(w: np.ndarray, ref: np.ndarray) -> bool:
    """``w`` is ``ref`` with each output channel scaled (a BatchNorm the exporter folded into the conv)."""
    r = ref.reshape(len(ref), -1).astype(np.float64)
    x = w.reshape(len(w), -1).astype(np.float64)
    norm = (r * r).sum(1)
    if np.any(norm == 0):
        return False
    k = (x * r).sum(1) / norm
    return float(np.abs(x - k[:, None] * r).max()) <= 1e-5 * max(float(np.abs(x).max()), 1e-12)


def match_layers(model: onnx.ModelProto, torch_model: nn.Module) -> list[Matched]:
    """Nodes (MatMul / Gemm / Conv / Gather) whose weight initializer equals a quantized or 16-bit module's
    weight (``Wᵀ`` for MatMul), or, for a 16-bit conv, equals it scaled per output channel: 16-bit modes
    do not fold BatchNorm in torch, and the exporter folds it into the conv. Unmatched nodes are layers we
    left in float."""
    by_shape: dict[tuple[int, ...], list[tuple[str, nn.Module, np.ndarray]]] = {}
    for name, m in torch_model.named_modules():
        if isinstance(m, (_Quantized, _Half)):
            w = m.weight.detach().float().numpy()
            by_shape.setdefault(tuple(w.shape), []).append((name, m, w))
    inits = _inits(model)
    # The exporter stores equal tensors once and feeds the others through Identity nodes.
    alias = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "Identity" and n.input[0] in inits}
    used: set[str] = set()
    out: list[Matched] = []
    for node in model.graph.node:
        if node.op_type not in ("MatMul", "Gemm", "Conv", "Gather"):
            continue
        idx = 0 if node.op_type == "Gather" else 1
        if len(node.input) <= idx or alias.get(node.input[idx], node.input[idx]) not in inits:
            continue
        arr = numpy_helper.to_array(inits[alias.get(node.input[idx], node.input[idx])])
        transposed = node.op_type == "MatMul"
        if node.op_type == "Gemm":
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            if attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0:
                continue
            transposed = not attrs.get("transB", 0)
        if arr.dtype != np.float32:
            continue
        w = arr.T if transposed and arr.ndim == 2 else arr
        for name, m, ref in by_shape.get(tuple(w.shape), []):
            folded = node.op_type == "Conv" and isinstance(m, _Half) and _folded(w, ref)
            if name not in used and (np.array_equal(w, ref) or folded):
                used.add(name)
                out.append(Matched(node.name, node.op_type, alias.get(node.input[idx], node.input[idx]), name, m,
                                   transposed))
                break
    return out


def gemm_to_matmul(model: onnx.ModelProto, matched: list[Matched]) -> tuple[onnx.ModelProto, list[Matched]]:
    """Rewrite each matched Gemm (a Linear on 2-D input) as ``MatMul(x, Wᵀ)`` + ``Add(bias)``.

    onnxruntime's dynamic quantizer has integer kernels for MatMul only; handed Gemm nodes it splits
    them into MatMul + Add under new names and quantizes none of them (no error). Rewriting them here
    first keeps the names we hand it. Returns the new model and ``matched`` with each Gemm entry pointing
    at its MatMul node (op ``MatMul``, weight ``<name>_kn`` holding ``Wᵀ`` of shape ``(in, out)``).
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    inits = _inits(out)
    gemms = {m.node: m for m in matched if m.op_type == "Gemm"}
    nodes = list(out.graph.node)
    del out.graph.node[:]
    renamed: dict[str, Matched] = {}
    for node in nodes:
        mt = gemms.get(node.name)
        beta = next((a.f for a in node.attribute if a.name == "beta"), 1.0)
        if mt is None or beta != 1.0:  # a scaled bias (never exported from torch) keeps its Gemm
            out.graph.node.append(node)
            continue
        w = numpy_helper.to_array(inits[mt.weight])
        kn = numpy_helper.from_array(np.ascontiguousarray(w if mt.transposed else w.T), mt.weight + "_kn")
        out.graph.initializer.append(kn)
        has_bias = len(node.input) > 2 and node.input[2] != ""
        mm_out = node.output[0] + "_matmul" if has_bias else node.output[0]
        out.graph.node.append(helper.make_node("MatMul", [node.input[0], kn.name], [mm_out], name=node.name + "_MatMul"))
        if has_bias:
            out.graph.node.append(helper.make_node("Add", [mm_out, node.input[2]], [node.output[0]],
                                                   name=node.name + "_Add"))
        renamed[node.name] = Matched(node.name + "_MatMul", "MatMul", kn.name, mt.module_name, mt.module, True)
    used = {i for n in out.graph.node for i in n.input}
    for t in list(out.graph.initializer):
        if t.name not in used:
            out.graph.initializer.remove(t)
    return out, [renamed.get(m.node, m) for m in matched]


def to_fp16_weights(model: onnx.ModelProto, matched: list[Matched], dtype: str = "float16") -> onnx.ModelProto:
    """Store the matched weights in 16 bits, each followed by a Cast back to float32.

    onnxruntime folds the Casts at session start, so compute stays fp32 (as fast as before) and the
    file is about half the size: 16 bits is a storage format on this CPU. A conv whose BatchNorm the
    exporter folded holds the folded weight, rounded to 16 bits after folding (1e-3-level differences).
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    inits = _inits(out)
    to = TensorProto.BFLOAT16 if dtype == "bfloat16" else TensorProto.FLOAT16
    done: set[str] = set()
    for mt in matched:
        if mt.weight in done:
            continue
        done.add(mt.weight)
        t = inits[mt.weight]
        arr = numpy_helper.to_array(t)
        if dtype == "bfloat16":
            bits = (arr.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)  # on-grid: exact
            new = helper.make_tensor(t.name + "_16", to, arr.shape, bits.tobytes(), raw=True)
        else:
            new = numpy_helper.from_array(arr.astype(np.float16), t.name + "_16")
        out.graph.initializer.remove(t)
        out.graph.initializer.append(new)
        out.graph.node.insert(0, helper.make_node("Cast", [new.name], [t.name], to=TensorProto.FLOAT,
                                                  name=t.name + "_cast"))
    return out


def _block_size(k: int, group: int | None) -> int:
    """MatMulNBits block: the layer's group, else the largest power of two ≥ 16 dividing ``k`` (≤ 128),
    else 32: MatMulNBits takes ``K`` as an attribute and reads ``ceil(K / block)`` blocks per column, so
    the last block is padded (with the zero point, which dequantizes to 0) — LeNet's 300 / 100 / 500
    inputs stay 4-bit instead of float, and a group size that does not divide ``K`` is the short last
    group of `modelpress.quantization.affine.group_view`."""
    if group is not None:
        return group
    for b in (128, 64, 32, 16):
        if k % b == 0:
            return b
    return 32


def to_matmul_nbits(model: onnx.ModelProto, matched: list[Matched], *, accuracy_level: int = 0
                    ) -> tuple[onnx.ModelProto, list[str]]:
    """Replace matched MatMul / Gemm nodes of 4- or 8-bit weight-only layers by ``com.microsoft``
    MatMulNBits written from *our* integer codes and scales (not re-quantized: onnxruntime's own
    weight-only quantizer would derive new scales, which differ from QAT's learned ones and, for 4-bit,
    from our symmetric grid). Per-channel scales are repeated over blocks, which is exact.

    Returns the new model and the nodes left as they were (with why).
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    inits = _inits(out)
    nodes = {n.name: n for n in out.graph.node}
    left: list[str] = []
    for mt in matched:
        m = mt.module
        if mt.op_type not in ("MatMul", "Gemm") or not isinstance(m, _Quantized) or m.meta["kind"] != "linear":
            continue
        bits, spec = m.spec.bits, m.spec
        n_out, k = m.qweight.shape
        block = _block_size(k, spec.group_size if spec.granularity == "group" else None)
        q = m.qweight.numpy().astype(np.int32)                      # (N, K) signed codes
        scale = m.scale.numpy().astype(np.float32)
        zp = m.zero_point.numpy().astype(np.int32)
        nb = -(-k // block)
        if nb * block != k:  # pad the last block with its zero point (dequantizes to 0)
            last_zp = np.broadcast_to(zp.reshape(n_out if zp.size > 1 else 1, -1)[:, -1:], (n_out, 1))
            q = np.concatenate([q, np.repeat(last_zp, nb * block - k, axis=1)], axis=1)
        # per-row / per-tensor / per-group scales, expanded to one per (row, block)
        if spec.granularity == "group":
            s_blk, z_blk = scale.reshape(n_out, nb), zp.reshape(n_out, nb)
        else:
            s_blk = np.broadcast_to(scale.reshape(-1, 1), (n_out, 1)).repeat(nb, axis=1)
            z_blk = np.broadcast_to(zp.reshape(-1, 1), (n_out, 1)).repeat(nb, axis=1)
        offset = 1 << (bits - 1)                                    # unsigned = signed + 2^(b-1)
        qu = (q + offset).astype(np.uint8).reshape(n_out, nb, block)
        if bits == 4:
            packed = (qu[..., 0::2] | (qu[..., 1::2] << 4)).astype(np.uint8)
        else:
            packed = qu
        prefix = mt.weight + "_nbits"
        new_inits = [numpy_helper.from_array(packed, prefix + "_B"),
                     numpy_helper.from_array(s_blk.reshape(-1).astype(np.float32), prefix + "_scales")]
        inputs = [None, prefix + "_B", prefix + "_scales"]
        if np.any(z_blk != 0):
            zu = (z_blk + offset).astype(np.uint8)
            if bits == 4:
                if nb % 2:
                    zu = np.concatenate([zu, np.full((n_out, 1), offset, np.uint8)], axis=1)
                zu = (zu[:, 0::2] | (zu[:, 1::2] << 4)).astype(np.uint8)
            new_inits.append(numpy_helper.from_array(zu.reshape(-1), prefix + "_zp"))
            inputs.append(prefix + "_zp")
        node = nodes[mt.node]
        inputs[0] = node.input[0]
        result = node.output[0]
        mm_out = result if mt.op_type == "MatMul" or len(node.input) < 3 else result + "_nobias"
        new_nodes = [helper.make_node("MatMulNBits", inputs, [mm_out], domain="com.microsoft",
                                      name=node.name + "_nbits", K=k, N=n_out, bits=bits, block_size=block,
                                      accuracy_level=accuracy_level)]
        if mm_out != result:
            new_nodes.append(helper.make_node("Add", [mm_out, node.input[2]], [result], name=node.name + "_bias"))
        pos = list(out.graph.node).index(node)
        out.graph.node.remove(node)
        for i, nn_ in enumerate(new_nodes):
            out.graph.node.insert(pos + i, nn_)
        out.graph.initializer.extend(new_inits)
    used = {i for n in out.graph.node for i in n.input}
    for t in list(out.graph.initializer):
        if t.name not in used:
            out.graph.initializer.remove(t)
    if not any(o.domain == "com.microsoft" for o in out.opset_import):
        out.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    del inits
    return out, left
