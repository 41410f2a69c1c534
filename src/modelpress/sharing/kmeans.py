"""1-D k-means for weight sharing (pure tensor functions, no modules).

Deep Compression (Han et al. 2016) clusters each layer's weights in one dimension. In 1-D the nearest
centroid is found by a binary search among the midpoints of the sorted centroids, so one Lloyd
iteration over n weights and k codes costs O(n log k) — a 235k-weight layer clusters in milliseconds.
"""

from __future__ import annotations

import torch
from torch import Tensor

from modelpress.errors import bad_value, is_int

__all__ = ["assign_1d", "init_centroids", "kmeans_1d"]


def init_centroids(values: Tensor, k: int, init: str = "linear", *, seed: int = 0) -> Tensor:
    """``k`` initial centroids (float64, sorted ascending) for the 1-D ``values`` (shape ``(n,)``).

    ``linear``: evenly spaced over ``[min, max]``; ``density``: the ``(i + 0.5) / k`` quantiles (evenly
    spaced on the CDF); ``random``: ``k`` distinct values drawn with ``seed`` (Forgy). Raises
    BadInputError for an unknown ``init``, ``k < 1`` or empty ``values``.
    """
    if not is_int(k, 1):
        raise bad_value("k", "init_centroids", "an int >= 1", k)
    v = values.detach().reshape(-1).double()
    if v.numel() == 0:
        raise bad_value("values", "init_centroids", "a non-empty tensor", "0 elements")
    if init == "linear":
        c = torch.linspace(float(v.min()), float(v.max()), k, dtype=torch.float64)
    elif init == "density":
        c = torch.quantile(v, (torch.arange(k, dtype=torch.float64) + 0.5) / k)
    elif init == "random":
        gen = torch.Generator().manual_seed(seed)
        pick = torch.randperm(v.numel(), generator=gen)[: min(k, v.numel())]
        c = v[pick]
        if c.numel() < k:  # fewer values than codes: repeat the last one (its extra codes stay unused)
            c = torch.cat([c, c[-1:].expand(k - c.numel())])
    else:
        raise bad_value("init", "init_centroids", "one of ['linear', 'density', 'random']", init)
    return torch.sort(c).values


def assign_1d(values: Tensor, centroids: Tensor) -> Tensor:
    """Index (int64, shape of ``values``) of the nearest of the sorted 1-D ``centroids``; ties go to the
    lower centroid."""
    mids = (centroids[1:] + centroids[:-1]) / 2
    return torch.searchsorted(mids.to(torch.float64), values.double().contiguous(), right=False)


def kmeans_1d(values: Tensor, k: int, *, init: str = "linear", iters: int = 100,
              seed: int = 0) -> tuple[Tensor, Tensor]:
    """Lloyd's k-means of the 1-D ``values`` (any shape, n elements) into ``k`` clusters.

    Returns ``(centroids, assignments)``: centroids float32 of shape ``(k,)``, sorted ascending; an empty
    cluster keeps its previous centroid. Assignments int64 of ``values``' shape, in ``[0, k)``. Stops
    when no assignment changes or after ``iters`` iterations. Deterministic for a given ``seed``.
    Raises BadInputError for ``k < 1``, ``iters < 1``, empty or non-finite ``values``.
    """
    if not is_int(iters, 1):
        raise bad_value("iters", "kmeans_1d", "an int >= 1", iters)
    v = values.detach().reshape(-1).double()
    if v.numel() and not bool(torch.isfinite(v).all()):
        raise bad_value("values", "kmeans_1d", "finite numbers", "NaN or inf among them")
    c = init_centroids(v, k, init, seed=seed)
    assign = assign_1d(v, c)
    for _ in range(iters):
        sums = torch.zeros(k, dtype=torch.float64).index_add_(0, assign, v)
        counts = torch.bincount(assign, minlength=k).double()
        c = torch.where(counts > 0, sums / counts.clamp_min(1), c)
        c = torch.sort(c).values  # means of 1-D clusters keep their order; sort guards float ties
        new = assign_1d(v, c)
        if torch.equal(new, assign):
            break
        assign = new
    return c.float(), assign.reshape(values.shape)
