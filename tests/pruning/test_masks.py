"""Pure mask functions: exact counts, magnitude order, the Zhu & Gupta schedule."""

from __future__ import annotations

import itertools
import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from modelpress.pruning.masks import (
    get_mask,
    global_magnitude_masks,
    magnitude_mask,
    n_pruned,
    set_mask,
    zhu_gupta_sparsity,
)

shapes = st.lists(st.integers(1, 9), min_size=1, max_size=4)
fractions = st.floats(0, 0.999, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(shape=shapes, s=fractions, seed=st.integers(0, 2**16))
def test_magnitude_mask_removes_exactly_round_s_n_smallest(shape, s, seed):
    w = torch.randn(*shape, generator=torch.Generator().manual_seed(seed))
    keep = magnitude_mask(w, s)
    assert keep.shape == w.shape and keep.dtype == torch.bool
    assert int((~keep).sum()) == math.floor(s * w.numel() + 0.5) == n_pruned(w.numel(), s)  # half up
    if keep.any() and (~keep).any():
        assert w.abs()[keep].min() >= w.abs()[~keep].max()


def test_magnitude_mask_planted():
    w = torch.tensor([[0.5, -0.1, 3.0], [-2.0, 0.05, 1.0]])
    assert magnitude_mask(w, 0.5).tolist() == [[False, False, True], [True, False, True]]
    # ties are broken by position so the count stays exact
    assert magnitude_mask(torch.zeros(10), 0.3).tolist() == [False] * 3 + [True] * 7


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(1, 200), min_size=1, max_size=5), s=fractions, seed=st.integers(0, 999))
def test_global_masks_hit_the_total_exactly_with_one_threshold(sizes, s, seed):
    g = torch.Generator().manual_seed(seed)
    ws = {f"l{i}": torch.randn(n, generator=g) * (i + 1) for i, n in enumerate(sizes)}
    masks = global_magnitude_masks(ws, s)
    total = sum(sizes)
    assert sum(int((~m).sum()) for m in masks.values()) == round(s * total)
    kept = torch.cat([ws[k].abs()[masks[k]] for k in ws])
    cut = torch.cat([ws[k].abs()[~masks[k]] for k in ws])
    if len(kept) and len(cut):
        assert kept.min() >= cut.max()


def test_zhu_gupta_schedule_values():
    # s_t = s_f + (s_i - s_f)(1 - (t - t0)/(n dt))^3 with s_i=0, s_f=0.9, t0=0, n=4, dt=10
    f = lambda t: zhu_gupta_sparsity(t, 0.9, n=4, every=10)
    assert f(0) == 0.0
    assert abs(f(20) - 0.9 * (1 - 0.5**3)) < 1e-12  # 0.7875
    assert f(40) == 0.9 and f(1000) == 0.9
    vals = [f(t) for t in range(41)]
    assert all(a <= b for a, b in itertools.pairwise(vals))
    assert zhu_gupta_sparsity(5, 0.8, initial=0.2, start=10, n=2, every=5) == 0.2


def test_set_mask_is_a_parametrization_updated_in_place():
    lin = nn.Linear(4, 3)
    keep = magnitude_mask(lin.weight, 0.5)
    set_mask(lin, keep)
    assert torch.equal(lin.weight == 0, ~keep)
    set_mask(lin, magnitude_mask(lin.weight, 0.75))
    assert len(lin.parametrizations["weight"]) == 1  # replaced, not stacked
    assert int((lin.weight == 0).sum()) == 9 and get_mask(lin) is not None
