"""1-D k-means: planted clusters are found, every init works, bad input is refused."""

from __future__ import annotations

import pytest
import torch

from modelpress.errors import BadInputError
from modelpress.sharing.kmeans import assign_1d, init_centroids, kmeans_1d

CENTERS = torch.tensor([-1.0, -0.3, 0.2, 0.9, 2.0])


def _planted(n_per: int = 2000, spread: float = 0.02, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(len(CENTERS)).repeat_interleave(n_per)
    values = CENTERS[labels] + spread * torch.randn(labels.numel(), generator=gen)
    perm = torch.randperm(labels.numel(), generator=gen)
    return values[perm], labels[perm]


@pytest.mark.parametrize("init", ["linear", "density"])
def test_planted_clusters_are_found(init):
    values, labels = _planted()
    centroids, assign = kmeans_1d(values, 5, init=init, seed=1)
    # Each centroid within 4 standard errors of the planted centre; every point in its own cluster.
    assert torch.allclose(centroids, CENTERS, atol=0.005), centroids
    assert torch.equal(assign, labels)


def test_random_init_ends_at_a_lloyd_fixed_point():
    # Forgy init can merge two planted clusters (k-means' local minima; why Han et al. prefer linear):
    # what must hold is that each centroid is the mean of the values assigned to it.
    values, _ = _planted()
    centroids, assign = kmeans_1d(values, 5, init="random", seed=1)
    for j in range(5):
        if bool((assign == j).any()):
            assert float(values[assign == j].mean()) == pytest.approx(float(centroids[j]), abs=1e-6)
    assert torch.equal(assign_1d(values, centroids.double()), assign)


def test_centroids_are_cluster_means_and_sorted():
    values = torch.tensor([0.0, 0.1, 0.2, 5.0, 5.2, 9.0])
    centroids, assign = kmeans_1d(values, 3)
    assert assign.tolist() == [0, 0, 0, 1, 1, 2]
    assert torch.allclose(centroids, torch.tensor([0.1, 5.1, 9.0]))


def test_linear_init_spans_the_range_and_density_follows_quantiles():
    v = torch.tensor([0.0, 1.0, 1.0, 1.0, 10.0])
    assert init_centroids(v, 3, "linear").tolist() == [0.0, 5.0, 10.0]
    assert init_centroids(v, 1, "density").tolist() == [1.0]


def test_assignment_is_to_the_nearest_centroid():
    c = torch.tensor([-1.0, 0.0, 3.0])
    v = torch.tensor([-2.0, -0.6, -0.4, 1.4, 1.6, 9.0])
    assert assign_1d(v, c).tolist() == [0, 0, 1, 1, 2, 2]


def test_deterministic_for_a_seed():
    values, _ = _planted(seed=3)
    a = kmeans_1d(values, 7, init="random", seed=5)
    b = kmeans_1d(values, 7, init="random", seed=5)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"k": 0}, "`k` of `init_centroids`"),
    ({"k": 3, "init": "kmeans++"}, "`init` of `init_centroids`"),
    ({"k": 3, "iters": 0}, "`iters` of `kmeans_1d`"),
])
def test_bad_arguments_are_clear_errors(kwargs, match):
    with pytest.raises(BadInputError, match=match):
        kmeans_1d(torch.ones(10), **kwargs)


def test_non_finite_values_are_refused():
    with pytest.raises(BadInputError, match="finite"):
        kmeans_1d(torch.tensor([1.0, float("nan")]), 2)
