"""Rank selection by empirical variational Bayesian matrix factorization (EVBMF), written from the paper.

Nakajima, Sugiyama, Babacan & Tomioka, "Global analytic solution of fully-observed variational Bayesian
matrix factorization", JMLR 14 (2013), with the noise-variance objective of Nakajima et al., "Condition
for perfect dimensionality recovery by variational Bayesian PCA", JMLR 16 (2015). No maintained package
ships it (Kim et al. 2016 used it to pick Tucker ranks), so it lives here.

Model: ``V = B Aᵀ + E`` for an ``(L, M)`` matrix with ``L <= M`` (transpose otherwise), Gaussian noise of
variance ``σ²`` and Gaussian priors on the factors whose variances are estimated too (empirical Bayes).
With ``α = L / M`` and the singular values ``γ_h`` of ``V``:

- the EVB solution keeps component ``h`` exactly when ``γ_h > γ_EVB = σ √(M x̲)``, with
  ``x̲ = (1 + τ̲)(1 + α / τ̲)`` and ``τ̲`` the positive root of ``log(τ + 1) + α log(τ / α + 1) = τ``
  (τ̲ ≈ 2.5129 √α; solved exactly here);
- when ``σ²`` is unknown it minimises the free energy
  ``Ω(σ²) = Σ_h ψ0(x_h) + Σ_{x_h > x̲} ψ1(x_h)`` over ``x_h = γ_h² / (M σ²)``, with ``ψ0(x) = x − log x``,
  ``ψ1(x) = log(τ(x) + 1) + α log(τ(x) / α + 1) − τ(x)`` and
  ``τ(x) = ½ (x − (1 + α) + √((x − (1 + α))² − 4α))`` — one scalar minimisation between the bounds the
  2015 paper gives.

The estimated rank is the number of components kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from modelpress.errors import bad_value

__all__ = ["VBMF", "evbmf", "vbmf_rank"]


@dataclass(frozen=True)
class VBMF:
    """The EVBMF estimate: ``rank`` kept, the noise variance ``sigma2`` (given or estimated), the singular
    value ``threshold`` below which components are dropped, and the shrunk singular values kept."""

    rank: int
    sigma2: float
    threshold: float
    shrunk: tuple[float, ...]


def _tau_lower(alpha: float) -> float:
    """τ̲: the positive root of ``log(τ + 1) + α log(τ / α + 1) − τ`` (it lies above √α)."""
    from scipy.optimize import brentq  # scipy (a scikit-learn dependency) for a robust scalar root

    def f(t: float) -> float:
        return math.log(t + 1) + alpha * math.log(t / alpha + 1) - t

    return float(brentq(f, math.sqrt(alpha), 10.0 + 10.0 * math.sqrt(alpha)))


def _tau(x: np.ndarray, alpha: float) -> np.ndarray:
    d = x - (1 + alpha)
    return 0.5 * (d + np.sqrt(np.maximum(d * d - 4 * alpha, 0.0)))


def _free_energy(sigma2: float, s2: np.ndarray, m: int, alpha: float, x_lower: float) -> float:
    """Ω(σ²) up to a constant, from the squared singular values ``s2`` (all ``L`` of them)."""
    x = s2 / (m * sigma2)
    big = x[x > x_lower]
    tau = _tau(big, alpha)
    psi0 = float(np.sum(x - np.log(x)))
    psi1 = float(np.sum(np.log(tau + 1) + alpha * np.log(tau / alpha + 1) - tau))
    return psi0 + psi1


def _estimate_sigma2(s: np.ndarray, l: int, m: int, alpha: float, x_lower: float) -> float:
    from scipy.optimize import minimize_scalar

    s2 = s**2
    # Bounds of Nakajima et al. 2015: σ² lies between these (the EVB rank is below L / (1 + α)).
    h_max = max(0, min(math.ceil(l / (1 + alpha)) - 1, l - 1))
    upper = float(np.sum(s2)) / (l * m)
    lower = max(float(s2[h_max]) / (m * x_lower), float(np.mean(s2[h_max:])) / m)
    lower = min(lower, upper)
    if upper <= 0:
        return 0.0
    if lower <= 0:
        lower = upper * 1e-12
    if math.isclose(lower, upper):
        return upper
    res = minimize_scalar(_free_energy, args=(s2, m, alpha, x_lower), bounds=(lower, upper), method="bounded",
                          options={"xatol": 1e-10 * upper})  # fmt: skip
    return float(res.x)


def evbmf(v: Tensor | np.ndarray, sigma2: float | None = None) -> VBMF:
    """EVBMF of the matrix ``v`` ``(L, M)`` (any orientation): the estimated rank, noise variance,
    threshold and shrunk singular values. ``sigma2``: the noise variance when known (> 0), else estimated.
    Raises BadInputError for a non-2-D, empty or non-finite ``v`` or a bad ``sigma2``.
    """
    a = np.asarray(v.detach().cpu().double().numpy() if isinstance(v, Tensor) else v, dtype=np.float64)
    if a.ndim != 2 or a.size == 0 or not np.all(np.isfinite(a)):
        raise bad_value("v", "evbmf", "a finite, non-empty 2-D matrix", getattr(a, "shape", a))
    if sigma2 is not None and not (isinstance(sigma2, (int, float)) and sigma2 > 0 and math.isfinite(sigma2)):
        raise bad_value("sigma2", "evbmf", "a positive float or None (estimate it)", sigma2)
    if a.shape[0] > a.shape[1]:
        a = a.T
    l, m = a.shape
    alpha = l / m
    # torch's SVD (its thread setting holds; numpy's BLAS threads would compete with torch's)
    s = torch.linalg.svdvals(torch.from_numpy(np.ascontiguousarray(a))).numpy()
    tau_lower = _tau_lower(alpha)
    x_lower = (1 + tau_lower) * (1 + alpha / tau_lower)
    if sigma2 is None:
        sigma2 = _estimate_sigma2(s, l, m, alpha, x_lower)
    threshold = math.sqrt(m * sigma2 * x_lower)
    keep = s[s > threshold]
    # the EVB shrinkage estimator of the kept singular values (2013, Theorem 2)
    q = 1 - (l + m) * sigma2 / keep**2
    shrunk = keep / 2 * (q + np.sqrt(np.maximum(q * q - 4 * l * m * sigma2**2 / keep**4, 0.0)))
    return VBMF(int(keep.size), float(sigma2), float(threshold), tuple(float(x) for x in shrunk))


def vbmf_rank(v: Tensor | np.ndarray) -> int:
    """The rank EVBMF estimates for ``v`` (noise variance estimated); at least 1."""
    return max(1, evbmf(v).rank)
