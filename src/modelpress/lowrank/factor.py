"""From a dense layer to its factored form: the matrix to factor, the rank to keep, the factored module."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from modelpress.errors import BadInputError
from modelpress.lowrank.modules import (
    ChannelFactoredConv2d,
    FactoredLinear,
    SpatialFactoredConv2d,
    conv_geometry,
    unfold_spatial,
)
from modelpress.lowrank.ranks import energy_at, max_rank, rank_for_energy, round_rank, truncated_svd

__all__ = ["Plan", "choose_rank", "factor", "layer_matrix"]


@dataclass(frozen=True)
class Plan:
    """How one layer is factored: the matrix (``(m, n)``, float) whose SVD gives the factors, and ``form``
    (``linear``, ``channel`` or ``spatial``)."""

    matrix: Tensor
    form: str
    geometry: dict[str, Any] | None


def layer_matrix(module: nn.Module, conv_mode: str) -> Plan:
    """The matrix to factor for a Linear (its weight ``(out, in)``) or Conv2d: ``(out, in·kh·kw)`` for the
    channel form, ``(in·kh, out·kw)`` for the spatial one (used when both kernel sides exceed 1).
    Raises ValueError for a conv `conv_geometry` rejects (the caller skips it)."""
    w = module.weight.detach()
    if isinstance(module, nn.Linear):
        return Plan(w, "linear", None)
    geo = conv_geometry(module)
    if geo is None:
        raise ValueError("grouped conv, non-zero padding mode or asymmetric 'same' padding")
    if conv_mode == "spatial" and min(module.kernel_size) > 1:
        return Plan(unfold_spatial(w), "spatial", geo)
    return Plan(w.reshape(w.shape[0], -1), "channel", geo)


def choose_rank(layer: str, key: str, value: Any, s: Tensor, m: int, n: int, multiple: int,
                owner: str = "LowRank") -> tuple[int | None, str]:  # fmt: skip
    """The rank for a layer whose ``(m, n)`` matrix has singular values ``s``, from the setting
    ``key = value`` (``rank`` / ``ratio`` / ``energy``), or ``(None, why)`` when the layer stays dense.

    ``rank`` is used as given; ``ratio`` and ``energy`` ranks are rounded to ``multiple`` and capped
    below the break-even. Raises BadInputError naming ``layer`` for a ``rank`` or ``ratio`` that is 0,
    above the full rank ``min(m, n)`` or at / above the break-even ``m·n / (m + n)``.
    """
    full, top = min(m, n), max_rank(m, n)
    if top < 1:
        return None, f"no rank makes a {m}×{n} matrix smaller (break-even {m * n / (m + n):.2f} < 2)"
    if key == "energy":
        want = rank_for_energy(s, float(value))
        if want > top:
            return None, (f"energy {value} needs rank {want}, at or above the break-even {m * n / (m + n):.1f} "
                          f"(largest smaller rank {top}); the layer would not get smaller")  # fmt: skip
        return round_rank(want, multiple, top), ""
    rank = int(value) if key == "rank" else max(1, round(float(value) * full))
    what = f"rank {rank}" + (f" (ratio {value} of full rank {full})" if key == "ratio" else "")
    if rank > full:
        raise BadInputError(f"{what} of layer `{layer}` is above its full rank {full} ({m}×{n}). "
                            f"Fix: give `{owner}` a rank <= {top} for it (per_layer).")  # fmt: skip
    if rank > top:
        raise BadInputError(f"{what} of layer `{layer}` is at or above the parameter break-even "
                            f"{m * n / (m + n):.1f} of its {m}×{n} matrix, so the factors would be larger than "
                            f"the layer. Fix: give `{owner}` a rank <= {top} for it (per_layer).")  # fmt: skip
    return (rank if key == "rank" else round_rank(rank, multiple, top)), ""


def factor(module: nn.Module, plan: Plan, rank: int,
           svd: tuple[Tensor, Tensor, Tensor] | None = None) -> tuple[nn.Module, float]:  # fmt: skip
    """The factored module of ``module`` at ``rank`` and the energy it keeps (1 − ‖W − Ŵ‖² / ‖W‖²).
    ``svd``: `truncated_svd` of ``plan.matrix`` at full rank when the caller has it (sliced to ``rank``)."""
    left, right, s = svd if svd is not None else truncated_svd(plan.matrix, min(plan.matrix.shape))
    left, right = left[:, :rank].contiguous(), right[:rank].contiguous()
    bias = None if module.bias is None else module.bias.detach()
    if plan.form == "linear":
        new: nn.Module = FactoredLinear.from_factors(left, right, bias)
    elif plan.form == "spatial":
        new = SpatialFactoredConv2d.from_factors(plan.geometry, left, right, bias)
    else:
        new = ChannelFactoredConv2d.from_factors(plan.geometry, left, right, bias)
    return new.to(module.weight.device), energy_at(s, rank)
