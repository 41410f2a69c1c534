"""Quantized embedding tables in the deployed graph: ``Gather`` → ``com.microsoft`` GatherBlockQuantized.

The exported graph holds each embedding table in fp32 (MiniLM's word table is 47 MB, half the file),
so a 4-bit model's deployed file was 0.60× the fp32 file while its artifact was 0.13×. GatherBlockQuantized
(onnxruntime's contrib op, CPU kernel) gathers rows of uint8 codes — 4-bit codes two per byte — and
dequantizes only the gathered rows with their block scales and packed uint8 zero points, so the table stays
at its stored size and a call costs one row-dequantization per token, not a table's. The codes, scales
and zero points are modelpress's own (the artifact's), written, not re-quantized.

OpenVINO does not read contrib ops: only onnxruntime candidates get this form (see `deploy`).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from modelpress.quantization.modules import _Quantized
from modelpress.quantization.onnx_rewrite import Matched

__all__ = ["pack_nibbles", "to_gather_block_quantized"]


def pack_nibbles(u: np.ndarray) -> np.ndarray:
    """uint8 values < 16, shape ``(..., n)``, two per byte along the last dim (low nibble first; an odd
    ``n`` is padded with 0): shape ``(..., ceil(n / 2))``."""
    if u.shape[-1] % 2:
        u = np.concatenate([u, np.zeros((*u.shape[:-1], 1), np.uint8)], axis=-1)
    return (u[..., 0::2] | (u[..., 1::2] << 4)).astype(np.uint8)


def _block(d: int, group: int | None) -> int:
    """The op's block along a row of ``d``: the layer's group (the op takes a shorter last block, as
    `modelpress.quantization.affine.group_view` makes one), else the largest power of two ≥ 16 dividing
    ``d``, else 32 (one scale per row, repeated over the row's blocks, is exact)."""
    if group is not None:
        return group
    return next((b for b in (256, 128, 64, 32, 16) if d % b == 0), 32)


def _tensors(m: _Quantized, prefix: str) -> tuple[list[onnx.TensorProto], int] | str:
    """(data, scales, zero points) initializers and the block size of embedding ``m``, or why not."""
    spec = m.spec
    v, d = m.qweight.shape
    if spec.bits not in (4, 8) or (spec.bits == 4 and d % 2):
        return f"{spec.bits}-bit codes in rows of {d} (the op takes 8-bit codes, or 4-bit ones in whole bytes)"
    block = _block(d, spec.group_size if spec.granularity == "group" else None)
    nb = -(-d // block)
    offset = 1 << (spec.bits - 1)  # unsigned = signed + 2^(b-1)
    u = (m.qweight.numpy().astype(np.int16) + offset).astype(np.uint8)
    rows = v if m.scale.shape[0] == v else 1  # per row / group, or one grid for the table
    scale = np.broadcast_to(m.scale.numpy().astype(np.float32).reshape(rows, -1), (v, m.scale.numel() // rows))
    zp = np.broadcast_to(m.zero_point.numpy().reshape(rows, -1), scale.shape)
    if scale.shape[1] != nb:  # one grid per row, repeated over the row's blocks (exact)
        scale, zp = np.repeat(scale, nb, axis=1), np.repeat(zp, nb, axis=1)
    zu = (zp.astype(np.int16) + offset).astype(np.uint8)
    if spec.bits == 4:
        u, zu = pack_nibbles(u), pack_nibbles(zu)
    return [numpy_helper.from_array(np.ascontiguousarray(u), prefix + "_q"),
            numpy_helper.from_array(np.ascontiguousarray(scale), prefix + "_scales"),
            numpy_helper.from_array(np.ascontiguousarray(zu), prefix + "_zp")], block


def _drop_unused(model: onnx.ModelProto) -> None:
    """Remove initializers no node reads, and Identity aliases of them that nothing reads."""
    outputs = {o.name for o in model.graph.output}
    while True:
        read = {i for n in model.graph.node for i in n.input} | outputs
        dead = [n for n in model.graph.node if n.op_type == "Identity" and n.output[0] not in read]
        for n in dead:
            model.graph.node.remove(n)
        if not dead:
            break
    read = {i for n in model.graph.node for i in n.input} | outputs
    for t in [t for t in model.graph.initializer if t.name not in read]:
        model.graph.initializer.remove(t)


def to_gather_block_quantized(model: onnx.ModelProto, matched: list[Matched]) -> tuple[onnx.ModelProto, list[str]]:
    """A copy of ``model`` in which each matched ``Gather`` of a quantized embedding (axis 0, the table a
    constant) reads the table from its codes through GatherBlockQuantized (``gather_axis=0``,
    ``quantize_axis=1``). Nodes are found by name, so ``model`` may be any candidate built from the graph
    ``matched`` was taken from. Returns the new model and the embeddings left fp32, with why."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    nodes = {n.name: n for n in out.graph.node}
    left: list[str] = []
    for mt in matched:
        m = mt.module
        if mt.op_type != "Gather" or not isinstance(m, _Quantized) or m.meta["kind"] != "embedding":
            continue
        node = nodes.get(mt.node)
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0) if node is not None else 0
        if node is None or axis != 0:
            left.append(f"{mt.node}: {'not in this graph' if node is None else f'gathers on axis {axis}'}")
            continue
        got = _tensors(m, mt.weight + "_gbq")
        if isinstance(got, str):
            left.append(f"{mt.node}: {got}")
            continue
        inits, block = got
        new = helper.make_node("GatherBlockQuantized", [inits[0].name, node.input[1], inits[1].name, inits[2].name],
                               list(node.output), domain="com.microsoft", name=node.name + "_gbq",
                               gather_axis=0, quantize_axis=1, block_size=block, bits=m.spec.bits)
        pos = list(out.graph.node).index(node)
        out.graph.node.remove(node)
        out.graph.node.insert(pos, new)
        out.graph.initializer.extend(inits)
    _drop_unused(out)
    if not any(o.domain == "com.microsoft" for o in out.opset_import):
        out.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return out, left
