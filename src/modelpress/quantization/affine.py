"""Affine (uniform) quantization: pure tensor functions, no modules.

``q = clamp(round(x / scale) + zero_point, qmin, qmax)`` and ``x̂ = (q - zero_point) * scale``.
Rounding is half-to-even (``torch.round``), like onnxruntime's QuantizeLinear, so that the PyTorch
simulation and the deployed model produce the same integers. Every range is widened to include 0 so
that zero (padding, ReLU output) is exact. Within the range, ``|x - x̂| ≤ scale / 2``.

Granularity of weight scales: ``tensor`` (one scale), ``channel`` (one per output channel, axis 0) or
``group`` (one per ``group_size`` consecutive elements of each output channel's flattened row; a row
whose length ``group_size`` does not divide ends in one shorter group).

Symmetric codes below 8 bits use the whole signed range: ``scale = max|x| / 2^(b-1)``, so a 4-bit group
has 16 levels instead of 15 (the positive extreme rounds to ``2^(b-1) - 1``, at most one step off) — the
grid of onnxruntime's and NNCF's symmetric int4. Measured on MiniLM (int4 g32, bbc-news, sentence-embedding
cosine to fp32): ``max/7`` 0.946, ``max/8`` 0.957, asymmetric with a zero point 0.968 (the 4-bit default,
see `Quantize`). int8 keeps ``[-127, 127]``, onnxruntime's int8 form.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from modelpress.errors import bad_value

__all__ = [
    "dequantize",
    "dequantize_weight",
    "fake_quantize",
    "group_count",
    "group_view",
    "qparams_from_range",
    "qrange",
    "quantize",
    "quantize_weight",
    "ungroup",
    "weight_qparams",
]

_EPS = 1e-12


def qrange(bits: int, signed: bool) -> tuple[int, int]:
    """Integer range of a ``bits``-bit code: signed ``[-2^(b-1), 2^(b-1) - 1]``, unsigned ``[0, 2^b - 1]``.

    Raises BadInputError for bits outside 2..8.
    """
    if not isinstance(bits, int) or isinstance(bits, bool) or not 2 <= bits <= 8:
        raise bad_value("bits", "qrange", "an int in 2..8", bits)
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


def qparams_from_range(lo: Tensor, hi: Tensor, bits: int, *, symmetric: bool, signed: bool
                       ) -> tuple[Tensor, Tensor]:
    """Scale (float32) and zero point (int32) for real ranges ``[lo, hi]`` (same shape, any shape).

    Symmetric: ``scale = max(|lo|, |hi|) / (2^(b-1) - 1)`` for 8 bits (onnxruntime's ``[-127, 127]``) and
    ``/ 2^(b-1)`` below 8 bits (the whole signed range, see the module doc); zero point 0 (signed) or
    ``2^(b-1)`` (unsigned). Asymmetric:
    ``scale = (hi - lo) / (qmax - qmin)``, ``zero_point = round(qmin - lo / scale)``.
    A zero-width range gets scale 1 (any scale represents all-zeros exactly).
    """
    lo = torch.minimum(lo.detach().float(), torch.zeros_like(lo, dtype=torch.float32))
    hi = torch.maximum(hi.detach().float(), torch.zeros_like(hi, dtype=torch.float32))
    qmin, qmax = qrange(bits, signed)
    if symmetric:
        absmax = torch.maximum(-lo, hi)
        scale = absmax / float((1 << (bits - 1)) - (1 if bits == 8 else 0))
        scale = torch.where(scale > _EPS, scale, torch.ones_like(scale))
        zp = torch.zeros_like(scale, dtype=torch.int32) + (0 if signed else (1 << (bits - 1)))
        return scale, zp
    scale = (hi - lo) / float(qmax - qmin)
    scale = torch.where(scale > _EPS, scale, torch.ones_like(scale))
    zp = torch.clamp(torch.round(qmin - lo / scale), qmin, qmax).to(torch.int32)
    return scale, zp


def quantize(x: Tensor, scale: Tensor, zero_point: Tensor, qmin: int, qmax: int) -> Tensor:
    """Integer codes (int32, shape of ``x``); ``scale`` / ``zero_point`` broadcast against ``x``."""
    return torch.clamp(torch.round(x / scale) + zero_point, qmin, qmax).to(torch.int32)


def dequantize(q: Tensor, scale: Tensor, zero_point: Tensor) -> Tensor:
    """Real values (float32) of integer codes ``q``."""
    return (q.to(torch.float32) - zero_point.to(torch.float32)) * scale


def fake_quantize(x: Tensor, scale: Tensor, zero_point: Tensor, qmin: int, qmax: int) -> Tensor:
    """``dequantize(quantize(x))`` in float, differentiable by the straight-through estimator.

    Forward rounds and clamps; backward passes the gradient unchanged where ``x`` lies inside the
    representable range and zeroes it where it was clipped (the usual STE). Gradients also reach
    ``scale`` when it requires grad (LSQ: the step size is learned).
    """
    zp = zero_point.to(x.dtype)
    v = x / scale + zp
    # round with an identity gradient: v + (round(v) - v).detach()
    rounded = v + (torch.round(v) - v).detach()
    clipped = torch.clamp(rounded, qmin, qmax)
    return (clipped - zp) * scale


def group_count(k: int, group_size: int) -> int:
    """Groups of a row of ``k`` elements: ``ceil(k / group_size)`` (the last one may be shorter)."""
    return -(-k // group_size)


def group_view(w: Tensor, granularity: str, group_size: int) -> Tensor:
    """``w`` reshaped so that each scale covers one slice of the last dim.

    ``tensor``: ``(1, n)``; ``channel``: ``(C_out, k)``; ``group``: ``(C_out, ceil(k / group_size),
    group_size)``. When ``group_size`` does not divide the row length ``k``, the last group is shorter: it
    is padded with zeros here, which changes neither its range (every range includes 0) nor its codes' error
    (0 is exact); `ungroup` drops the padding again.
    """
    rows = w.reshape(w.shape[0], -1)
    if granularity == "tensor":
        return rows.reshape(1, -1)
    if granularity == "channel":
        return rows
    if granularity == "group":
        k = rows.shape[1]
        n = group_count(k, group_size)
        if n * group_size != k:
            rows = torch.nn.functional.pad(rows, (0, n * group_size - k))
        return rows.reshape(rows.shape[0], n, group_size)
    raise bad_value("granularity", "Quantize", "one of ['channel', 'tensor', 'group']", granularity)


def ungroup(view: Tensor, shape: torch.Size | tuple[int, ...]) -> Tensor:
    """The inverse of `group_view`: drop a short last group's padding and restore ``shape``."""
    total = math.prod(int(d) for d in shape)
    if view.numel() == total:
        return view.reshape(shape)
    return view.reshape(int(shape[0]), -1)[:, : total // int(shape[0])].reshape(shape)


def _mse_clip(view: Tensor, lo: Tensor, hi: Tensor, bits: int, symmetric: bool, signed: bool
              ) -> tuple[Tensor, Tensor]:
    """Shrink each range by the factor in 1.0, 0.98, ..., 0.5 that minimizes the quantization MSE."""
    qmin, qmax = qrange(bits, signed)
    best_err = torch.full_like(lo, float("inf"))
    best_lo, best_hi = lo.clone(), hi.clone()
    for k in range(26):
        f = 1.0 - 0.02 * k
        s, z = qparams_from_range(lo * f, hi * f, bits, symmetric=symmetric, signed=signed)
        err = (dequantize(quantize(view, s, z, qmin, qmax), s, z) - view).pow(2).sum(dim=-1, keepdim=True)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_lo = torch.where(better, lo * f, best_lo)
        best_hi = torch.where(better, hi * f, best_hi)
    return best_lo, best_hi


def weight_qparams(w: Tensor, bits: int, granularity: str, group_size: int = 32, *, symmetric: bool = True,
                   observer: str = "minmax", scale_dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    """Scales and zero points of weight ``w`` (shape ``(C_out, ...)``), signed codes.

    Shapes: ``tensor`` → ``(1, 1)``; ``channel`` → ``(C_out, 1)``; ``group`` → ``(C_out, ceil(k/g), 1)``, each
    broadcasting against :func:`group_view`. ``observer="mse"`` searches a clipping of each range;
    anything else takes min-max. ``scale_dtype=float16`` rounds scales to half precision *before* the
    codes are computed, so that storing them in 16 bits is exact.
    """
    view = group_view(w.detach().float(), granularity, group_size)
    lo, hi = view.amin(dim=-1, keepdim=True), view.amax(dim=-1, keepdim=True)
    if observer == "mse":
        lo, hi = _mse_clip(view, lo, hi, bits, symmetric, True)
    scale, zp = qparams_from_range(lo, hi, bits, symmetric=symmetric, signed=True)
    if scale_dtype != torch.float32:
        tiny = torch.finfo(scale_dtype).tiny
        scale = scale.clamp_min(tiny).to(scale_dtype).to(torch.float32)
    return scale, zp


def quantize_weight(w: Tensor, scale: Tensor, zero_point: Tensor, bits: int, granularity: str,
                    group_size: int = 32) -> Tensor:
    """Signed integer codes of ``w`` as int8, shape of ``w``."""
    qmin, qmax = qrange(bits, True)
    view = group_view(w.detach().float(), granularity, group_size)
    return ungroup(quantize(view, scale, zero_point, qmin, qmax).to(torch.int8), w.shape)


def dequantize_weight(q: Tensor, scale: Tensor, zero_point: Tensor, granularity: str,
                      group_size: int = 32) -> Tensor:
    """Float32 weights of codes ``q`` (shape kept)."""
    view = group_view(q, granularity, group_size)
    return ungroup(dequantize(view, scale, zero_point), q.shape)
