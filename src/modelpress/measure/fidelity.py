"""Fidelity: how closely a model's outputs follow a reference model's outputs on the same inputs.

Accuracy counts how often a model is right; fidelity counts how often it does what the reference did,
so it can tell two compressed forms apart even on data where both are always right (training data).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from modelpress.errors import BadInputError

__all__ = ["Fidelity", "fidelity"]


@dataclass(frozen=True)
class Fidelity:
    """Agreement of ``outputs`` with ``reference`` over ``n`` rows.

    - ``agreement``: fraction of rows whose argmax over the last dimension equals the reference's
      (top-1 agreement; None for outputs with one value per row, which have no argmax);
    - ``cosine``: mean over rows of the cosine similarity of the output vectors;
    - ``sqnr_db``: signal-to-quantization-noise ratio ``10·log10(Σ ref² / Σ (out − ref)²)`` in dB over
      all values (inf when identical);
    - ``max_abs_diff``: the largest absolute difference of one value.
    """

    n: int
    agreement: float | None
    cosine: float
    sqnr_db: float
    max_abs_diff: float

    def to_dict(self) -> dict[str, float | int | None]:
        """JSON-able, rounded; an infinite SQNR (identical outputs) becomes None."""
        d = asdict(self)
        for k in ("agreement", "cosine", "sqnr_db", "max_abs_diff"):
            v = d[k]
            d[k] = None if v is None or not math.isfinite(v) else round(v, 6)
        return d


def fidelity(outputs: Tensor, reference: Tensor) -> Fidelity:
    """Fidelity of ``outputs`` to ``reference``, both ``(n, ...)`` of the same shape (e.g. logits
    ``(n, classes)``). Raises `BadInputError` when the shapes differ or there are no rows."""
    out, ref = torch.as_tensor(outputs).detach().float(), torch.as_tensor(reference).detach().float()
    if out.shape != ref.shape or out.dim() == 0 or out.shape[0] == 0:
        raise BadInputError(
            f"`outputs` of `fidelity` must have the reference's shape {tuple(ref.shape)} with at least one "
            f"row; got {tuple(out.shape)}. Fix: run both models on the same inputs."
        )
    n = out.shape[0]
    flat_out, flat_ref = out.reshape(n, -1), ref.reshape(n, -1)
    agreement = None
    if flat_out.shape[1] > 1:
        agreement = float((out.argmax(-1) == ref.argmax(-1)).float().mean())
    cosine = float(torch.nn.functional.cosine_similarity(flat_out, flat_ref, dim=1, eps=1e-12).mean())
    noise = float(((out - ref) ** 2).sum())
    signal = float((ref**2).sum())
    sqnr = math.inf if noise == 0 else (10 * math.log10(signal / noise) if signal > 0 else -math.inf)
    return Fidelity(n, agreement, cosine, sqnr, float((out - ref).abs().max()))
