"""EVBMF (Nakajima et al. 2013) recovers planted ranks and the noise variance."""

import math

import numpy as np
import pytest
import torch

from modelpress.decomposition.vbmf import _tau_lower, evbmf, vbmf_rank
from modelpress.errors import BadInputError


@pytest.mark.parametrize(("l", "m", "rank", "sigma"), [
    (64, 128, 5, 0.1), (100, 100, 12, 0.5), (200, 80, 20, 1.0), (128, 1152, 30, 0.3), (32, 288, 3, 0.05),
])
def test_planted_rank_and_noise_are_recovered(l, m, rank, sigma):
    g = torch.Generator().manual_seed(l + m + rank)
    signal = torch.randn(l, rank, generator=g, dtype=torch.float64) @ torch.randn(rank, m, generator=g,
                                                                                   dtype=torch.float64)
    v = signal + sigma * torch.randn(l, m, generator=g, dtype=torch.float64)
    est = evbmf(v)
    assert est.rank == rank
    assert est.sigma2 == pytest.approx(sigma**2, rel=0.1)
    assert len(est.shrunk) == rank and all(0 < x for x in est.shrunk)
    s = np.linalg.svd(v.numpy(), compute_uv=False)
    assert s[rank - 1] > est.threshold > s[rank]
    assert vbmf_rank(v.T) == rank  # orientation does not matter


def test_pure_noise_has_rank_zero_and_vbmf_rank_at_least_one():
    v = torch.randn(64, 256, generator=torch.Generator().manual_seed(3))
    assert evbmf(v).rank == 0
    assert vbmf_rank(v) == 1


def test_known_noise_variance_is_used():
    g = torch.Generator().manual_seed(4)
    v = torch.randn(50, 4, generator=g) @ torch.randn(4, 90, generator=g) + 0.2 * torch.randn(50, 90, generator=g)
    est = evbmf(v, sigma2=0.04)
    assert est.sigma2 == 0.04 and est.rank == 4


def test_tau_lower_solves_its_equation_and_matches_the_paper_at_alpha_1():
    assert _tau_lower(1.0) == pytest.approx(2.5129, abs=1e-4)  # the paper's constant
    for alpha in (0.05, 0.3, 0.8):
        t = _tau_lower(alpha)
        assert math.log(t + 1) + alpha * math.log(t / alpha + 1) == pytest.approx(t, abs=1e-9)


@pytest.mark.parametrize(("v", "kw", "msg"), [
    (torch.zeros(3, 4, 5), {}, "`v` of `evbmf` must be a finite, non-empty 2-D matrix"),
    (torch.tensor([[1.0, float("nan")]]), {}, "finite"),
    (torch.ones(3, 4), {"sigma2": -1.0}, "`sigma2` of `evbmf`"),
])
def test_bad_input_is_a_clear_error(v, kw, msg):
    with pytest.raises(BadInputError, match=msg):
        evbmf(v, **kw)
