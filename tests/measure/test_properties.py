"""Invariants, checked on generated values with hypothesis."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from modelpress.measure import Stats, compare
from modelpress.measure._model import batch_of
from modelpress.measure.compare import human_bytes
from modelpress.tasks.task import Split

positive = st.integers(min_value=1, max_value=10**9)
times = st.floats(min_value=1e-3, max_value=1e4, allow_nan=False)
metrics = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


@st.composite
def stats(draw):
    return Stats(size_bytes=draw(positive), params=draw(positive), nonzero_params=draw(positive),
                 macs=draw(positive), latency_ms=draw(times), latency_p90_ms=draw(times),
                 peak_mem_bytes=draw(positive), metric=draw(metrics))  # fmt: skip


@given(stats(), stats())
def test_ratios_invert_and_delta_flips(a, b):
    ab, ba = compare(a, b), compare(b, a)
    for key, r in ab.ratios.items():
        assert r * ba.ratios[key] == pytest.approx(1.0)
    assert ab.metric_delta == pytest.approx(-ba.metric_delta)
    assert compare(a, a).ratios == dict.fromkeys(ab.ratios, 1.0)


@given(st.integers(min_value=0, max_value=2**40), st.integers(min_value=0, max_value=2**40))
def test_human_bytes_keeps_order_across_units(x, y):
    units = ["B", "KB", "MB", "GB"]

    def key(text):
        value, unit = text.split()
        return units.index(unit), float(value)

    if x < y:
        assert key(human_bytes(x)) <= key(human_bytes(y))


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=1, max_value=20), st.integers(min_value=1, max_value=50))
def test_batch_of_has_the_asked_rows_from_the_split(n, batch):
    split = Split((torch.arange(n).float().unsqueeze(1), torch.arange(n) * 10), torch.arange(n), "t")
    x, ids = batch_of(split, batch)
    assert x.shape == (batch, 1) and ids.shape == (batch,)
    assert torch.equal(x[:, 0].long() * 10, ids)  # rows stay aligned across inputs
    assert torch.equal(x[: min(n, batch), 0], torch.arange(min(n, batch)).float())
