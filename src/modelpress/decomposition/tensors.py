"""Tucker-2 and CP decompositions of a conv kernel ``(out, in, kh, kw)``, with tensorly on its PyTorch backend.

tensorly (a dependency) is used because its HOOI (``partial_tucker``) and CP-ALS (``parafac``) are well
tested and run on torch tensors directly; the backend is switched only inside these calls
(``tl.backend_context``), so nobody else's tensorly state changes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from modelpress.errors import bad_value

__all__ = ["CP", "Tucker2", "cp_kernel", "relative_error", "tucker2_kernel", "unfold"]


@dataclass(frozen=True)
class Tucker2:
    """``W ≈ core ×₀ out_factor ×₁ in_factor``: ``core`` ``(r_out, r_in, kh, kw)``, ``out_factor``
    ``(out, r_out)``, ``in_factor`` ``(in, r_in)`` (orthonormal columns)."""

    core: Tensor
    out_factor: Tensor
    in_factor: Tensor

    def dense(self) -> Tensor:
        """The kernel ``(out, in, kh, kw)`` these factors give."""
        return torch.einsum("ob,bayx,ca->ocyx", self.out_factor, self.core, self.in_factor)


@dataclass(frozen=True)
class CP:
    """``W[o, c, y, x] ≈ Σ_r out[o, r] · inp[c, r] · vertical[y, r] · horizontal[x, r]`` (weights folded in,
    each component's scale split evenly over its four factors)."""

    out: Tensor
    inp: Tensor
    vertical: Tensor
    horizontal: Tensor

    def dense(self) -> Tensor:
        """The kernel ``(out, in, kh, kw)`` these factors give."""
        return torch.einsum("or,cr,yr,xr->ocyx", self.out, self.inp, self.vertical, self.horizontal)


def unfold(w: Tensor, mode: int) -> Tensor:
    """Mode-``mode`` unfolding of ``w``: shape ``(w.shape[mode], prod(other dims))``."""
    return w.movedim(mode, 0).reshape(w.shape[mode], -1)


def relative_error(w: Tensor, approx: Tensor) -> float:
    """``‖w − approx‖ / ‖w‖`` (Frobenius; 0 for a zero ``w`` approximated by zeros)."""
    norm = float(w.double().norm())
    diff = float((w.double() - approx.double()).norm())
    return diff / norm if norm > 0 else diff


def _check_kernel(w: Tensor, owner: str) -> None:
    if not isinstance(w, Tensor) or w.dim() != 4 or w.numel() == 0:
        raise bad_value("w", owner, "a 4-D conv kernel (out, in, kh, kw)", getattr(w, "shape", type(w).__name__))


def tucker2_kernel(w: Tensor, ranks: tuple[int, int], *, n_iter: int = 50, tol: float = 1e-6) -> Tucker2:
    """Tucker-2 (HOOI, SVD init) of the kernel ``w`` ``(out, in, kh, kw)`` on its two channel modes at
    ``ranks = (r_out, r_in)`` (Kim et al. 2016). Computed in float64; factors returned in ``w``'s dtype.
    Raises BadInputError for a bad kernel or ranks outside ``[1, out]`` × ``[1, in]``."""
    import tensorly as tl
    from tensorly.decomposition import partial_tucker

    _check_kernel(w, "tucker2_kernel")
    r_out, r_in = ranks
    if not (1 <= r_out <= w.shape[0] and 1 <= r_in <= w.shape[1]):
        raise bad_value("ranks", "tucker2_kernel", f"(r_out, r_in) in [1, {w.shape[0]}] × [1, {w.shape[1]}]", ranks)
    with tl.backend_context("pytorch"):
        (core, (u_out, u_in)), _ = partial_tucker(w.detach().double(), rank=[r_out, r_in], modes=[0, 1],
                                                  init="svd", n_iter_max=n_iter, tol=tol)  # fmt: skip
    return Tucker2(core.to(w.dtype), u_out.to(w.dtype), u_in.to(w.dtype))


def cp_kernel(w: Tensor, rank: int, *, n_iter: int = 50, tol: float = 1e-7, seed: int = 0) -> CP:
    """CP (ALS, random init seeded by ``seed``, line search) of the kernel ``w`` ``(out, in, kh, kw)`` at
    ``rank`` (Lebedev et al. 2015). Computed in float64; factors returned in ``w``'s dtype.
    Raises BadInputError for a bad kernel or a rank below 1."""
    import tensorly as tl
    from tensorly.decomposition import parafac

    _check_kernel(w, "cp_kernel")
    if not isinstance(rank, int) or rank < 1:
        raise bad_value("rank", "cp_kernel", "an int >= 1", rank)
    with tl.backend_context("pytorch"):
        cp = parafac(w.detach().double(), rank=rank, init="random", n_iter_max=n_iter, tol=tol,
                     random_state=seed, normalize_factors=True, linesearch=True)  # fmt: skip
    weights, factors = cp
    # Split each component's scale evenly over its four unit-norm factors: balanced factors keep the
    # depthwise and 1×1 weights at similar magnitudes (better conditioned for fine-tuning and int8).
    scale = weights.abs().clamp_min(1e-300) ** 0.25
    sign = torch.where(weights < 0, -1.0, 1.0).to(weights.dtype)
    a, b, c, d = (f * scale for f in factors)
    return CP((a * sign).to(w.dtype), b.to(w.dtype), c.to(w.dtype), d.to(w.dtype))
