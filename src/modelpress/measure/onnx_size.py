"""Size on disk and parameter counts of an exported ONNX model.

Which initializers are parameters: every initializer that holds weights, whatever its element type
(float, float16, int8, uint8, int32 biases of quantized convs ...), counted element by element. Left
out are the ones that are not weights: int64 / bool initializers (shapes, axes, indices), 0-d scalars
(constants such as a 1/sqrt(d) scale) and the scales and zero points of quantization, found by their
input position in quantization operators (QuantizeLinear, DequantizeLinear, MatMulInteger,
QLinearConv, ...) and by the ``_scale`` / ``_zero_point`` names that ``onnxruntime.quantization`` gives
them (dynamic int8 multiplies a weight's scale in a plain ``Mul``). So an fp32 export counts the same
params as the torch model, and its int8 form counts each weight once. ``MatMulNBits`` packs two 4-bit
codes per byte and pads the last block: its weight counts ``N × K`` (its attributes), nonzero the codes
that differ from their block's zero point.
For a quantized weight, "nonzero" means not equal to its zero point (the value that stands for 0.0).
The count is of what the file holds: an exporter may fold constants (a position-embedding table sliced
to the traced length) or drop unused tensors, so it can be lower than the torch model's.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from modelpress.measure.runtime import check_onnx_file, load_onnx

__all__ = ["onnx_bytes", "onnx_params"]

# For each quantization operator: input positions holding scales / zero points (not weights), and
# (weight position, its zero-point position, the axis per-channel zero points run along).
_QUANT_META: dict[str, tuple[frozenset[int], list[tuple[int, int, int | None]]]] = {
    "QuantizeLinear": (frozenset({1, 2}), []),
    "DequantizeLinear": (frozenset({1, 2}), [(0, 2, None)]),  # axis from the node's attribute
    "MatMulInteger": (frozenset({2, 3}), [(1, 3, -1)]),
    "ConvInteger": (frozenset({2, 3}), [(1, 3, 0)]),
    "QLinearMatMul": (frozenset({1, 2, 4, 5, 6, 7}), [(3, 5, -1)]),
    "QLinearConv": (frozenset({1, 2, 4, 5, 6, 7}), [(3, 5, 0)]),
    "DynamicQuantizeMatMul": (frozenset({2, 3}), [(1, 3, -1)]),
    "MatMulIntegerToFloat": (frozenset({2, 3, 4, 5}), [(1, 5, -1)]),
    "DynamicQuantizeLSTM": (frozenset(range(8, 14)), []),
    "MatMulNBits": (frozenset({2, 3}), []),  # its packed weight is counted by _nbits_params
}
_NOT_WEIGHTS = (np.int64, np.bool_)
_QUANT_NAME = re.compile(r"_(scale|zero_point)$")


def onnx_bytes(path: str | Path) -> int:
    """Bytes on disk of the ``.onnx`` file plus every external-data file its initializers reference.
    Raises `BadInputError` if the file is missing or not ONNX."""
    import onnx

    p = check_onnx_file(path)
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception:
        load_onnx(p)  # raises the clear BadInputError
        raise
    files = {p.resolve()}
    for t in model.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            entries = {e.key: e.value for e in t.external_data}
            if "location" in entries:
                files.add((p.parent / entries["location"]).resolve())
    return sum(f.stat().st_size for f in files if f.is_file())


def _zero_point(zp: np.ndarray, weight: np.ndarray, axis: int | None) -> np.ndarray:
    """``zp`` shaped to broadcast against ``weight`` (per-tensor or per-channel along ``axis``)."""
    if zp.size == 1:
        return zp.reshape(())
    axis = (axis if axis is not None else 1) % weight.ndim
    shape = [1] * weight.ndim
    shape[axis] = zp.size
    return zp.reshape(shape)


def onnx_params(path: str | Path) -> tuple[int, int]:
    """``(params, nonzero_params)`` from the initializers of the ONNX model at ``path`` (see the module
    docstring for what counts). Raises `BadInputError` if the file is missing or not ONNX."""
    from onnx import numpy_helper

    model = load_onnx(path)
    arrays: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    meta: set[str] = set()
    zero_of: dict[str, tuple[np.ndarray, int | None]] = {}
    for node in model.graph.node:
        spec = _QUANT_META.get(node.op_type)
        if spec is None:
            continue
        positions, weights = spec
        meta.update(node.input[i] for i in positions if i < len(node.input) and node.input[i])
        for w_pos, zp_pos, axis in weights:
            if zp_pos < len(node.input) and node.input[zp_pos] in arrays and w_pos < len(node.input):
                if axis is None:
                    axis = _attr(node, "axis", 1)
                zero_of[node.input[w_pos]] = (arrays[node.input[zp_pos]], axis)

    total = nonzero = 0
    for node in model.graph.node:
        if node.op_type == "MatMulNBits" and node.input[1] in arrays:
            n, nz = _nbits_params(node, arrays)
            total, nonzero = total + n, nonzero + nz
            meta.add(node.input[1])
    for name, arr in arrays.items():
        if name in meta or _QUANT_NAME.search(name) or arr.ndim == 0 or arr.dtype.type in _NOT_WEIGHTS:
            continue
        total += arr.size
        if name in zero_of:
            zp, axis = zero_of[name]
            nonzero += int(np.count_nonzero(arr != _zero_point(zp, arr, axis)))
        else:
            nonzero += int(np.count_nonzero(arr))
    return total, nonzero


def _nbits_params(node: Any, arrays: dict[str, np.ndarray]) -> tuple[int, int]:
    """``(N × K, codes ≠ zero point)`` of one MatMulNBits weight: ``B`` is ``(N, blocks, block·bits/8)``
    uint8; zero points (input 3, packed like B per block) default to ``2^(bits-1)``."""
    n, k, bits = _attr(node, "N", 0), _attr(node, "K", 0), _attr(node, "bits", 4)
    block = _attr(node, "block_size", 32)
    packed = arrays[node.input[1]].reshape(n, -1)
    if bits == 4:
        codes = np.stack([packed & 0x0F, packed >> 4], axis=-1).reshape(n, -1)
    else:
        codes = packed
    blocks = codes.shape[1] // block
    zp = np.full((n, blocks), 1 << (bits - 1), dtype=np.uint8)
    if len(node.input) > 3 and node.input[3] in arrays:
        z = arrays[node.input[3]].astype(np.uint8).reshape(n, -1)
        if bits == 4:
            z = np.stack([z & 0x0F, z >> 4], axis=-1).reshape(n, -1)
        zp = z[:, :blocks]
    full = np.repeat(zp, block, axis=1)
    return n * k, int(np.count_nonzero(codes[:, :k] != full[:, :k]))


def _attr(node: Any, name: str, default: int) -> int:
    for a in node.attribute:
        if a.name == name:
            return int(a.i)
    return default
