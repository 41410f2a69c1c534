"""GPTQ: weight codes that compensate each column's rounding error (Frantar et al. 2023, "GPTQ").

Round-to-nearest (RTN) minimizes each weight's own error. What matters is the layer's *output* error
``‖(Ŵ - W) Xᵀ‖²`` over its real inputs ``X``; with ``H = XᵀX`` (the layer-input Hessian, ``(K, K)``) GPTQ
quantizes the input columns one at a time and spreads each column's rounding error over the columns not
yet quantized, weighted by the Cholesky factor of ``H⁻¹`` (the optimal-brain-surgeon update). Scales and
zero points are the same per-group grid as RTN (`modelpress.quantization.affine.weight_qparams`), taken
from each group's weights as updated when the quantizer reaches the group's first column, so the codes
deploy to the same MatMulNBits kernel; only the integers differ.

Pure tensor functions: `input_hessians` (forward hooks over calibration data) and `gptq_codes`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from modelpress.quantization.affine import dequantize, group_count, qrange, quantize, weight_qparams
from modelpress.quantization.observers import observe_inputs
from modelpress.tasks.task import Split

__all__ = ["gptq_codes", "input_hessians"]

_BLOCK = 128  # columns updated together (the paper's lazy batch update); a multiple of every group size


def input_hessians(model: nn.Module, names: list[str], split: Split, *, batch_size: int = 32
                   ) -> tuple[dict[str, Tensor], dict[str, int]]:
    """``H = Σ x xᵀ / n`` (float64, ``(K, K)``) of the input rows ``x`` (the last dim, ``K``) of each named
    Linear, over one pass of ``model`` on ``split``, and the row count ``n`` of each. Rows are every
    position of every example, padding included (the hooks see tensors, not masks). Layers no batch
    reached are left out."""
    sums: dict[str, Tensor] = {}
    counts: dict[str, int] = {}

    def add(name: str, inputs: Tensor) -> None:
        x = inputs.detach().reshape(-1, inputs.shape[-1]).double()
        sums[name] = sums.get(name, 0) + x.T @ x
        counts[name] = counts.get(name, 0) + x.shape[0]

    observe_inputs(model, names, add, split, batch_size=batch_size)
    return {n: sums[n] / counts[n] for n in sums}, counts


def _inverse_factor(h: Tensor, damp: float) -> Tensor:
    """Upper Cholesky factor of ``(H + λI)⁻¹`` (λ = ``damp`` × mean diagonal). Dead inputs (zero diagonal:
    never active on the calibration data) get a unit diagonal, so the factor exists."""
    h = h.double().clone()
    dead = torch.diagonal(h) == 0
    h[dead, dead] = 1.0
    lam = damp * float(torch.diagonal(h).mean())
    h += lam * torch.eye(h.shape[0], dtype=h.dtype)
    inv = torch.cholesky_inverse(torch.linalg.cholesky(h))
    return torch.linalg.cholesky(inv, upper=True)


def gptq_codes(w: Tensor, hessian: Tensor, bits: int, group_size: int, *, symmetric: bool = False,
               observer: str = "minmax", damp: float = 0.01,
               scale_dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor, Tensor]:
    """GPTQ codes of a Linear weight ``w`` ``(N, K)`` against its input Hessian ``hessian`` ``(K, K)``.

    Returns ``(codes, scale, zero_point)`` in the layout of `modelpress.quantization.affine` for
    ``granularity="group"``: codes int8 ``(N, K)`` (signed), scale float32 and zero point int32
    ``(N, ceil(K / group_size), 1)``; a last group shorter than ``group_size`` when it does not divide K.
    ``damp``: the diagonal added to ``H`` as a fraction of its mean (the paper's 1%), which keeps the
    inverse stable. Raises `torch.linalg.LinAlgError` only for a non-finite Hessian.
    """
    n_out, k = w.shape
    weights = w.detach().double().clone()
    u = _inverse_factor(hessian, damp)
    # dead inputs (never active on the calibration data) keep their weights: H has no row for them, so
    # they round to nearest and spread no error (zeroing them, as the reference code does, loses them
    # on data where they fire)
    qmin, qmax = qrange(bits, True)
    nb = group_count(k, group_size)
    scale = torch.ones(n_out, nb, 1)
    zp = torch.zeros(n_out, nb, 1, dtype=torch.int32)
    codes = torch.zeros(n_out, k, dtype=torch.int8)
    block = max(_BLOCK // group_size, 1) * group_size
    for i1 in range(0, k, block):
        i2 = min(i1 + block, k)
        w1 = weights[:, i1:i2].clone()
        err = torch.zeros_like(w1)
        u1 = u[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = i1 + i
            g = col // group_size
            if col % group_size == 0:  # the group's grid, from its weights as updated so far
                end = min(i + group_size, i2 - i1)
                s, z = weight_qparams(w1[:, i:end].float(), bits, "channel", symmetric=symmetric,
                                      observer=observer, scale_dtype=scale_dtype)
                scale[:, g], zp[:, g] = s, z
            s, z = scale[:, g, 0].double(), zp[:, g, 0]
            q = quantize(w1[:, i], s, z, qmin, qmax)
            codes[:, col] = q.to(torch.int8)
            e = (w1[:, i] - dequantize(q, s, z).double()) / u1[i, i]
            w1[:, i:] -= e.unsqueeze(1) * u1[i, i:].unsqueeze(0)
            err[:, i] = e
        weights[:, i2:] -= err @ u[i1:i2, i2:]
    return codes, scale, zp
