"""Unstructured (weight) pruning: magnitude masks, the mask parametrization, the Zhu & Gupta schedule.

Pure tensor functions (`magnitude_mask`, `global_magnitude_masks`, `zhu_gupta_sparsity`) and the module
layer (`WeightMask`, `set_mask`, `get_mask`). A mask is kept as a ``torch.nn.utils.parametrize``
parametrization, so ``module.weight`` is ``where(mask, original, +0.0)`` in every forward: pruned weights stay exactly
zero through any later training (their gradient is zero, and even if an optimizer moved ``original``
the product stays zero). ``modelpress.artifact.bake`` (artifact/baking.py) folds the mask into a plain weight.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from modelpress.errors import bad_value

__all__ = [
    "WeightMask",
    "get_mask",
    "global_magnitude_masks",
    "lowest_mask",
    "magnitude_mask",
    "n_pruned",
    "set_mask",
    "zhu_gupta_sparsity",
]


def n_pruned(numel: int, sparsity: float) -> int:
    """How many of ``numel`` elements a ``sparsity`` fraction removes: ``sparsity · numel`` rounded half up."""
    if not 0 <= sparsity < 1:
        raise bad_value("sparsity", "n_pruned", "a fraction in [0, 1)", sparsity)
    return min(numel, math.floor(sparsity * numel + 0.5))


def lowest_mask(scores: Tensor, k: int) -> Tensor:
    """A bool tensor (same shape as ``scores``) that is False at the ``k`` lowest scores, True elsewhere.

    Exactly ``k`` False entries, ties broken by position (a stable sort), so the sparsity is exact.
    """
    flat = scores.reshape(-1)
    keep = torch.ones(flat.numel(), dtype=torch.bool, device=flat.device)
    if k > 0:
        order = torch.sort(flat, stable=True).indices
        keep[order[:k]] = False
    return keep.reshape(scores.shape)


def magnitude_mask(weight: Tensor, sparsity: float) -> Tensor:
    """Keep-mask of ``weight`` (bool, same shape): False at the ``round(sparsity · numel)`` weights of
    smallest magnitude. Raises BadInputError for a sparsity outside [0, 1)."""
    return lowest_mask(weight.detach().abs().float(), n_pruned(weight.numel(), sparsity))


def global_magnitude_masks(weights: Mapping[str, Tensor], sparsity: float) -> dict[str, Tensor]:
    """One magnitude threshold over all ``weights``: exactly ``round(sparsity · total)`` of the weights
    of smallest |w| across every tensor are masked (False). Returns a keep-mask per name, same shapes."""
    if not weights:
        return {}
    names = list(weights)
    flat = torch.cat([weights[n].detach().abs().float().reshape(-1) for n in names])
    keep = lowest_mask(flat, n_pruned(flat.numel(), sparsity))
    out, start = {}, 0
    for n in names:
        size = weights[n].numel()
        out[n] = keep[start : start + size].reshape(weights[n].shape)
        start += size
    return out


def zhu_gupta_sparsity(step: int, final: float, *, initial: float = 0.0, start: int = 0, n: int = 1,
                       every: int = 1) -> float:  # fmt: skip
    """Zhu & Gupta (2017) gradual schedule: ``s_t = s_f + (s_i − s_f)(1 − (t − t0)/(nΔt))³``.

    ``step`` t, ``final`` s_f, ``initial`` s_i, ``start`` t0, ``n`` pruning events, ``every`` Δt (steps).
    Before t0 it is s_i; after t0 + nΔt it stays s_f.
    """
    if n < 1 or every < 1:
        raise bad_value("n / every", "zhu_gupta_sparsity", "ints >= 1", (n, every))
    progress = (step - start) / (n * every)
    if progress <= 0:
        return float(initial)
    if progress >= 1:
        return float(final)
    return final + (initial - final) * (1.0 - progress) ** 3


class WeightMask(nn.Module):
    """Parametrization ``weight = where(mask, original, 0)`` (``original * mask``, zeros positive) with a bool ``mask`` buffer of the weight's shape."""

    def __init__(self, mask: Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask.to(torch.bool).clone())

    def forward(self, original: Tensor) -> Tensor:
        # where(), not original * mask: a negative weight times 0 is -0.0, whose sign bit the artifact's
        # bit-exact packing must keep as a stored value; +0.0 packs away.
        return torch.where(self.mask, original, torch.zeros((), dtype=original.dtype, device=original.device))


def get_mask(module: nn.Module, name: str = "weight") -> WeightMask | None:
    """The `WeightMask` parametrizing ``module.<name>``, or None."""
    if not parametrize.is_parametrized(module, name):
        return None
    for p in module.parametrizations[name]:
        if isinstance(p, WeightMask):
            return p
    return None


@torch.no_grad()
def set_mask(module: nn.Module, keep: Tensor, name: str = "weight") -> None:
    """Mask ``module.<name>`` with the bool ``keep`` (same shape). A second call replaces the mask
    in place (no stacked parametrizations); the caller passes a mask that includes earlier zeros."""
    existing = get_mask(module, name)
    if existing is not None:
        existing.mask.copy_(keep.to(existing.mask.device))
        return
    register = parametrize.register_parametrization
    register(module, name, WeightMask(keep.to(getattr(module, name).device)))
