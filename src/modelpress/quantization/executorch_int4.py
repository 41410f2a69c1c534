"""4-bit weights in an ExecuTorch program: the export forms of modelpress's 4-bit Linear and Embedding layers.

What XNNPACK runs (executorch 1.5.1, checked here): a Linear whose weight is int4 codes in ``[-8, 7]``
with one scale per group of ``group_size`` consecutive input weights and no zero point (``qb4w``), its
input quantized per call to int8 per token (``qd8``: one asymmetric range per row). The graph it
recognizes is torchao's ``dequantize_affine`` of the weight and ``choose_qparams_affine`` /
``quantize_affine`` / ``dequantize_affine`` of the input, which `Int4GroupLinear` writes. Limits, each
found here:

- **symmetric codes only**: XNNPACK's serialized group quantization has no zero point, so a program built
  from asymmetric codes loads and runs with the zero points dropped (max output error 0.54 on a random
  1024 × 1024 layer). modelpress's symmetric 4-bit codes (``symmetric: true``) are carried bit for bit;
  asymmetric ones (the 4-bit default) are re-quantized symmetric, per group of the same size, from the
  weights they decode to, by modelpress's own rounding — `PteExport.notes` says so per layer;
- **group scales in bfloat16**: XNNPACK stores them so; modelpress's float16 scales are rounded once more
  (the notes give the largest relative change), re-quantized ones are chosen in bfloat16 first;
- **the group must divide the row** (``in_features % group_size == 0``): a layer where it does not is left
  to the 8-bit path (XNNPACK's int8 per-channel dynamic quantization), and the notes say so.

4-bit embedding tables become ``quantized_decomposed::embedding_4bit`` (a portable kernel, which takes
zero points): modelpress's codes, scales and zero points are carried bit for bit, two codes per byte.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from modelpress.quantization.affine import dequantize_weight, quantize_weight, weight_qparams
from modelpress.quantization.modules import _Quantized

__all__ = ["Int4GroupLinear", "NibbleEmbedding", "int4_embedding", "int4_linear"]

_QMIN, _QMAX = -8, 7


class Int4GroupLinear(nn.Module):
    """A Linear with int4 group-wise weights and per-token int8 dynamic input quantization, in the form
    XNNPACK lowers: ``qweight`` ``(out, in)`` int8 holding codes in ``[-8, 7]``, ``scale`` ``(out, in /
    group_size)`` float32 (bfloat16-exact), zero point 0; input ``(..., in)`` float32 → ``(..., out)``."""

    def __init__(self, qweight: Tensor, scale: Tensor, group_size: int, bias: Tensor | None = None) -> None:
        super().__init__()
        self.group_size = int(group_size)
        self.register_buffer("qweight", qweight.to(torch.int8).contiguous())
        self.register_buffer("scale", scale.float().reshape(qweight.shape[0], -1).contiguous())
        self.register_buffer("zero_point", torch.zeros_like(self.scale, dtype=torch.int8))
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())

    def forward(self, x: Tensor) -> Tensor:
        from torchao.quantization.quant_primitives import (
            MappingType,
            choose_qparams_affine,
            dequantize_affine,
            quantize_affine,
        )

        block = (1,) * (x.dim() - 1) + (x.shape[-1],)  # one range per token
        s, z = choose_qparams_affine(x, MappingType.ASYMMETRIC, block, torch.int8, -128, 127,
                                     zero_point_dtype=torch.int8)
        xq = quantize_affine(x, block, s, z, torch.int8, -128, 127)
        x = dequantize_affine(xq, block, s, z, torch.int8, -128, 127, output_dtype=x.dtype)
        w = dequantize_affine(self.qweight, (1, self.group_size), self.scale, self.zero_point, torch.int8,
                              _QMIN, _QMAX, output_dtype=torch.float32)
        return F.linear(x, w, self.bias)


class NibbleEmbedding(nn.Module):
    """An embedding table as 4-bit codes two per byte (``packed`` ``(num, dim / 2)`` uint8, the first code
    of a pair in the high nibble, stored +8), ``scale`` and ``zero_point`` ``(num, dim / group)`` float32
    (ExecuTorch's kernel takes zero points only in the output's dtype, and scales in theirs),
    run by ExecuTorch's ``quantized_decomposed::embedding_4bit``: indices ``(...)`` int64 → ``(..., dim)``
    float32."""

    def __init__(self, codes: Tensor, scale: Tensor, zero_point: Tensor, padding_idx: int | None = None) -> None:
        super().__init__()
        num = codes.shape[0]
        u = (codes.to(torch.int16) - _QMIN).to(torch.uint8).reshape(num, -1, 2)
        self.register_buffer("packed", (u[..., 0] * 16 + u[..., 1]).contiguous())
        self.register_buffer("scale", scale.float().reshape(num, -1).contiguous())
        self.register_buffer("zero_point", zero_point.float().reshape(num, -1).contiguous())
        self.padding_idx = padding_idx

    def forward(self, indices: Tensor) -> Tensor:
        return torch.ops.quantized_decomposed.embedding_4bit.dtype(
            self.packed, self.scale, self.zero_point, _QMIN, _QMAX, indices, dtype=torch.float32)


def _groups(m: _Quantized) -> int:
    """The group size a 4-bit layer's scales cover along its row (a whole row for channel / tensor)."""
    k = m.qweight.shape[1]
    return m.spec.group_size if m.spec.granularity == "group" else k


def _row_scales(m: _Quantized, group: int) -> Tensor:
    """modelpress's scales as ``(out, in / group)`` (a tensor scale repeated per row)."""
    out, k = m.qweight.shape[0], m.qweight.shape[1]
    return m.scale.float().reshape(-1, 1).expand(-1, k // group).reshape(out, -1) if m.spec.granularity == "tensor" \
        else m.scale.float().reshape(out, -1)


def int4_linear(name: str, m: _Quantized, notes: list[str]) -> Int4GroupLinear | None:
    """The XNNPACK form of a 4-bit ``QuantLinear`` ``m`` (see the module docstring), or None when its group
    does not divide its rows (a note says so; the caller takes the 8-bit path). Carries modelpress's codes
    when symmetric, else re-quantizes them symmetric; appends what it did to ``notes``."""
    group = _groups(m)
    k = m.qweight.shape[1]
    if k % group:
        notes.append(f"{name}: group {group} does not divide its {k} inputs (XNNPACK's 4-bit kernels need it): "
                     "quantized to 8 bits per channel by XNNPACK's dynamic quantizer instead")
        return None
    bias = m.bias.detach() if m.bias is not None else None
    if m.spec.symmetric:
        scale = _row_scales(m, group)
        rounded = scale.to(torch.bfloat16).float()
        change = float(((rounded - scale).abs() / scale.clamp_min(1e-12)).max())
        notes.append(f"{name}: modelpress's 4-bit codes carried; XNNPACK stores the group scales in bfloat16 "
                     f"(largest relative change {change:.2e})")
        return Int4GroupLinear(m.qweight, rounded, group, bias)
    w = dequantize_weight(m.qweight, m.scale, m.zero_point, m.spec.granularity, m.spec.group_size)
    s, z = weight_qparams(w, 4, "group", group, symmetric=True, observer=m.spec.observer, scale_dtype=torch.bfloat16)
    q = quantize_weight(w, s, z, 4, "group", group)
    notes.append(f"{name}: asymmetric 4-bit codes re-quantized symmetric (group {group}, from the weights they "
                 "decode to): XNNPACK's 4-bit kernels take no zero point")
    return Int4GroupLinear(q, s.reshape(q.shape[0], -1), group, bias)


def int4_embedding(m: _Quantized) -> NibbleEmbedding | None:
    """modelpress's 4-bit embedding codes, scales and zero points as a `NibbleEmbedding` (bit for bit), or
    None when a row's length is odd or its groups do not divide it."""
    dim = m.qweight.shape[1]
    group = _groups(m)
    if dim % 2 or dim % group:
        return None
    scale = _row_scales(m, group)
    zp = m.zero_point.float().reshape(-1, 1).expand(-1, dim // group).reshape(scale.shape) \
        if m.spec.granularity == "tensor" else m.zero_point.float().reshape(scale.shape)
    return NibbleEmbedding(m.qweight, scale, zp, m.meta.get("padding_idx"))
