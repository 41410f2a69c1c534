"""Pure quantization functions: error bounds, granularity, observers."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from modelpress.errors import BadInputError
from modelpress.quantization.affine import (
    dequantize,
    dequantize_weight,
    fake_quantize,
    qparams_from_range,
    qrange,
    quantize,
    quantize_weight,
    weight_qparams,
)
from modelpress.quantization.observers import RangeObserver


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    bits=st.sampled_from([4, 8]),
    symmetric=st.booleans(),
    signed=st.booleans(),
    spread=st.floats(1e-3, 1e3),
    shift=st.floats(-2.0, 2.0),
)
def test_quantize_dequantize_error_at_most_half_a_step(seed, bits, symmetric, signed, spread, shift):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(257, generator=g) + shift) * spread
    scale, zp = qparams_from_range(x.min(), x.max(), bits, symmetric=symmetric, signed=signed)
    qmin, qmax = qrange(bits, signed)
    q = quantize(x, scale, zp, qmin, qmax)
    assert int(q.min()) >= qmin and int(q.max()) <= qmax
    err = (dequantize(q, scale, zp) - x).abs()
    tol = 1e-5 * float(scale) + 1e-6 * spread
    if symmetric and bits < 8:
        # the 16-level grid max/8: the positive extreme rounds down to 7 steps, at most one step off
        inside = x <= (qmax - int(zp) + 0.5) * scale
        assert float(err.max()) <= float(scale) + tol
        err = err[inside]
    assert float(err.max()) <= float(scale) / 2 + tol


def test_zero_is_exact_and_symmetric_int8_matches_onnxruntime_form():
    x = torch.tensor([-0.3, 0.0, 1.27])
    s, z = qparams_from_range(x.min(), x.max(), 8, symmetric=True, signed=True)
    assert float(s) == pytest.approx(1.27 / 127) and int(z) == 0
    s2, z2 = qparams_from_range(torch.tensor(0.5), torch.tensor(2.0), 8, symmetric=False, signed=False)
    q = quantize(torch.tensor([0.0]), s2, z2, 0, 255)
    assert float(dequantize(q, s2, z2)) == 0.0  # the range was widened to include 0


def test_per_channel_beats_per_tensor_on_a_planted_outlier_channel():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(16, 64, generator=g) * 0.05
    w[3] *= 100.0  # one outlier channel stretches the per-tensor range 100x
    errs = {}
    for gran in ("tensor", "channel"):
        s, z = weight_qparams(w, 8, gran)
        q = quantize_weight(w, s, z, 8, gran)
        errs[gran] = float((dequantize_weight(q, s, z, gran) - w)[torch.arange(16) != 3].pow(2).mean())
    assert errs["channel"] < errs["tensor"] / 100


def test_group_scales_follow_groups_and_mse_observer_does_not_increase_error():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(8, 128, generator=g)
    w[:, 5] = 20.0  # an outlier in the first group of each row only
    s, z = weight_qparams(w, 4, "group", 32)
    assert s.shape == (8, 4, 1)
    assert bool((s[:, 0] > 5 * s[:, 1]).all())
    err = {}
    for obs in ("minmax", "mse"):
        s, z = weight_qparams(w, 4, "group", 32, observer=obs)
        err[obs] = float((dequantize_weight(quantize_weight(w, s, z, 4, "group", 32), s, z, "group", 32) - w)
                         .pow(2).sum())
    assert err["mse"] <= err["minmax"]


def test_fake_quantize_straight_through_gradient():
    x = torch.tensor([-3.0, 0.26, 0.5, 9.0], requires_grad=True)
    s, z = torch.tensor(0.1), torch.tensor(0)
    y = fake_quantize(x, s, z, -8, 7)
    assert torch.allclose(y.detach(), torch.tensor([-0.8, 0.3, 0.5, 0.7]))
    y.sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 0.0]  # clipped values get no gradient


def test_a_group_size_that_does_not_divide_the_row_gets_a_shorter_last_group():
    g = torch.Generator().manual_seed(3)
    w = torch.randn(4, 50, generator=g) * 0.1
    w[:, 40] = 3.0  # an outlier in the short last group (columns 32..49) only
    s, z = weight_qparams(w, 4, "group", 32, symmetric=False)
    assert s.shape == (4, 2, 1)  # 50 = 32 + 18: two groups, not one scale per row
    # the last group's scale is its own range over 15 levels (its 18 values; the padding adds nothing)
    last = w[:, 32:]
    want = (last.amax(1) - torch.minimum(last.amin(1), torch.zeros(4))) / 15
    assert torch.allclose(s[:, 1, 0], want)
    assert bool((s[:, 0, 0] < want / 5).all())  # the first group is not stretched by the outlier
    q = quantize_weight(w, s, z, 4, "group", 32)
    assert q.shape == w.shape
    back = dequantize_weight(q, s, z, "group", 32)
    assert back.shape == w.shape
    assert float((back - w).abs().max()) <= float(s.max()) / 2 + 1e-6
    # the first group keeps its fine grid: RTN error there is at most half of its own scale
    assert bool(((back - w)[:, :32].abs() <= s[:, :1, 0] / 2 + 1e-7).all())


def test_bits_in_range():
    with pytest.raises(BadInputError, match="bits"):
        qrange(16, True)


def test_observers_percentile_and_mse_clip_an_outlier():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(100_000, generator=g)
    x[0] = 1000.0
    ranges = {}
    for method in ("minmax", "percentile", "mse"):
        obs = RangeObserver(method, percentile=99.9)
        for part in x.split(25_000):
            obs.update(part)
        ranges[method] = obs.range()
    assert ranges["minmax"][1] == 1000.0
    assert 2.5 < ranges["percentile"][1] < 4.0
    assert ranges["mse"][1] < 1000.0
    with pytest.raises(BadInputError, match="calibration"):
        RangeObserver().range()
