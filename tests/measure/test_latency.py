"""Latency: sane statistics, interleaved order, a fair ratio, threads restored."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from modelpress.errors import BadInputError
from modelpress.measure.latency import Latency, time_interleaved, time_one


def test_p90_at_least_median_and_positive():
    model = nn.Linear(64, 64)
    lat = time_one(lambda x: model(*x), (torch.randn(4, 64),), warmup=2, runs=15)
    assert isinstance(lat, Latency)
    assert lat.runs == 15
    assert lat.p90_ms >= lat.median_ms > 0


def test_ten_times_the_work_is_slower():
    torch.manual_seed(0)
    small = nn.Sequential(nn.Linear(256, 256))
    big = nn.Sequential(*[nn.Linear(256, 256) for _ in range(10)])
    x = (torch.randn(32, 256),)
    fast, slow = time_interleaved([lambda i: small(*i), lambda i: big(*i)], x, warmup=3, runs=25)
    # 10× the MACs; per-call overhead and noise keep the ratio under 10, but far above 2.
    assert slow.median_ms / fast.median_ms > 2


def test_round_robin_with_rotating_start():
    calls: list[str] = []

    def make(tag):
        return lambda x: calls.append(tag)

    time_interleaved([make("a"), make("b"), make("c")], (torch.zeros(1),), warmup=1, runs=3)
    assert calls[:3] == ["a", "b", "c"]  # warm-up, each once
    assert calls[3:] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]


def test_threads_fixed_during_and_restored_after():
    seen = []
    torch.set_num_threads(1)
    time_one(lambda x: seen.append(torch.get_num_threads()), (torch.zeros(1),), threads=2, warmup=0, runs=2)
    assert seen == [2, 2]
    assert torch.get_num_threads() == 1


def test_threads_restored_when_predict_raises():
    torch.set_num_threads(1)

    def boom(x):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        time_one(boom, (torch.zeros(1),), threads=2)
    assert torch.get_num_threads() == 1


@pytest.mark.parametrize(
    ("predicts", "kwargs"),
    [([], {}), ([print], {"runs": 0}), ([print], {"threads": 0}), ([print], {"warmup": -1}), ([3], {})],
)
def test_bad_arguments(predicts, kwargs):
    with pytest.raises(BadInputError):
        time_interleaved(predicts, (torch.zeros(1),), **kwargs)
