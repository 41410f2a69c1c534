"""time_interleaved(rewarm=True): each timed call follows an untimed call of the same candidate."""

from __future__ import annotations

import torch

from modelpress.measure.latency import time_interleaved


def test_rewarm_calls_each_candidate_right_before_its_timed_call():
    calls: list[str] = []

    def make(name):
        def predict(inputs):
            calls.append(name)
            return inputs[0]
        return predict

    time_interleaved([make("a"), make("b")], (torch.zeros(1, 2),), warmup=0, runs=3, rewarm=True)
    assert len(calls) == 2 * 2 * 3
    assert all(calls[i] == calls[i + 1] for i in range(0, len(calls), 2))  # untimed, then timed: same one
    calls.clear()
    time_interleaved([make("a"), make("b")], (torch.zeros(1, 2),), warmup=0, runs=3)
    assert len(calls) == 2 * 3  # the default times every call
