"""Pure functions for low-rank factorization: truncated SVD, the parameter break-even, rank choice and rounding.

A matrix ``W`` of shape ``(m, n)`` stored as two factors of rank ``r`` costs ``r·(m + n)`` parameters
instead of ``m·n``: the factors are smaller only while ``r < m·n / (m + n)`` (the *break-even*, for a
square matrix half its full rank). A rank at or above it makes the layer bigger (distiller#359).
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import torch
from torch import Tensor

from modelpress.errors import bad_value

__all__ = [
    "break_even",
    "energy_at",
    "max_rank",
    "rank_for_energy",
    "round_rank",
    "simd_block",
    "truncated_svd",
]


def truncated_svd(w: Tensor, rank: int) -> tuple[Tensor, Tensor, Tensor]:
    """Best rank-``rank`` factors of a matrix (Eckart–Young): ``w ≈ left @ right``.

    ``w``: shape ``(m, n)``, any float dtype. Returns ``(left, right, s)``: ``left`` of shape ``(m, r)`` =
    ``U_r · sqrt(S_r)``, ``right`` of shape ``(r, n)`` = ``sqrt(S_r) · V_rᵀ`` (both in ``w``'s dtype), and
    ``s`` all ``min(m, n)`` singular values (float64, descending). The square root of the singular values
    goes to each side so both factors have rows of comparable scale (per-channel int8 quantization of the
    factors later loses less than with ``U_r S_r`` on one side). Computed in float64.
    Raises BadInputError when ``w`` is not a 2-D tensor or ``rank`` is not in ``[1, min(m, n)]``.
    """
    if not isinstance(w, Tensor) or w.dim() != 2:
        raise bad_value("w", "truncated_svd", "a 2-D tensor (m, n)", getattr(w, "shape", type(w).__name__))
    full = min(w.shape)
    if not isinstance(rank, int) or isinstance(rank, bool) or not 1 <= rank <= full:
        raise bad_value("rank", "truncated_svd", f"an int in [1, {full}] (the full rank)", rank)
    u, s, vh = torch.linalg.svd(w.detach().double(), full_matrices=False)
    root = s[:rank].sqrt()
    left = (u[:, :rank] * root).to(w.dtype)
    right = (root[:, None] * vh[:rank]).to(w.dtype)
    return left, right, s


def break_even(m: int, n: int) -> float:
    """The rank ``m·n / (m + n)`` at which two factors hold as many parameters as the ``(m, n)`` matrix."""
    return m * n / (m + n)


def max_rank(m: int, n: int) -> int:
    """The largest rank whose factors are strictly smaller than the ``(m, n)`` matrix (0 when none is)."""
    return max(0, math.ceil(break_even(m, n)) - 1)


def energy_at(s: Tensor, rank: int) -> float:
    """Share of the squared singular values ``s`` (descending) kept by the first ``rank``: 1 − ‖W − W_r‖²/‖W‖²."""
    sq = s.double() ** 2
    total = float(sq.sum())
    return 1.0 if total == 0 else float(sq[:rank].sum()) / total


def rank_for_energy(s: Tensor, energy: float) -> int:
    """The smallest rank whose singular values ``s`` keep at least ``energy`` (in (0, 1]) of the squared sum."""
    sq = s.double() ** 2
    total = float(sq.sum())
    if total == 0:
        return 1
    cum = torch.cumsum(sq, 0) / total
    # a tiny tolerance: energy 1.0 must select the last non-zero singular value despite rounding
    return int(torch.searchsorted(cum, torch.tensor(energy - 1e-12, dtype=cum.dtype))) + 1


def round_rank(rank: int, multiple: int, limit: int) -> int:
    """``rank`` rounded to the nearest multiple of ``multiple`` (at least one multiple), kept ``<= limit``.

    CPU kernels process channels in SIMD blocks (16 fp32 lanes with AVX-512, 8 with AVX2), so a rank off
    the block wastes the remainder of the last block. When rounding up passes ``limit`` the rank rounds
    down; when ``limit`` is below one block the rank is ``min(rank, limit)``, unrounded.
    """
    if multiple <= 1 or limit < multiple:
        return max(1, min(rank, limit))
    up = max(multiple, multiple * round(rank / multiple))
    while up > limit:
        up -= multiple
    return up


@functools.cache
def simd_block() -> int:
    """Channels per SIMD block of this CPU's fp32 kernels, read from /proc/cpuinfo: 16 with AVX-512, else 8
    (AVX2; also the default where the file is missing)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return 8
    flags = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return 16 if "avx512f" in flags.split(":", 1)[-1].split() else 8
