"""Wall-clock latency of predict functions, timed interleaved in one process (architecture §6).

Timing two models one after the other lets CPU frequency, caches and other processes drift between
them; timing them round-robin spreads that drift over every candidate equally, so their ratio is fair.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from modelpress.errors import bad_value
from modelpress.measure._model import check_inputs, check_positive_int
from modelpress.tasks.task import Predict

__all__ = ["Latency", "time_interleaved", "time_one"]


@dataclass(frozen=True)
class Latency:
    """Latency of one forward pass, in milliseconds: median and 90th percentile over ``runs`` timed calls,
    and the 25th percentile (``p25_ms``; on a machine shared with other jobs a longer call is pre-empted
    more often, which inflates its median more than a shorter call's, so comparisons of kernels there are
    steadier on the lower quartile)."""

    median_ms: float
    p90_ms: float
    runs: int
    p25_ms: float = float("nan")


def time_interleaved(
    predicts: Sequence[Predict],
    inputs: tuple[Tensor, ...],
    *,
    threads: int = 1,
    warmup: int = 5,
    runs: int = 30,
    rewarm: bool = False,
) -> list[Latency]:
    """Time each ``predict(inputs)`` ``runs`` times, round-robin across the candidates.

    ``inputs``: the positional inputs of one call, each of shape ``(batch, ...)``; the batch is whatever
    the caller gives. ``torch.set_num_threads(threads)`` holds for the duration and is restored after.
    Every candidate first gets ``warmup`` untimed calls; then each round times every candidate once, the
    starting candidate rotating from round to round so no candidate is always first after a switch.
    Calls run under ``torch.no_grad``. With ``rewarm``, each timed call is preceded by one untimed call
    of the same candidate, so every candidate is timed hot, as in a process that runs only it: a call
    right after another runtime's runs with that runtime's code and data in the caches (measured here:
    onnxruntime on a small MLP at batch 1, 0.035 ms after its own call, 0.097 ms after an OpenVINO
    call), which would bias a comparison across runtimes. Returns one `Latency` per candidate, in order.
    Raises `BadInputError` for an empty ``predicts``, non-callables or bad counts.
    """
    if isinstance(predicts, (str, bytes)) or not isinstance(predicts, Sequence) or not predicts:
        raise bad_value("predicts", "time_interleaved", "a non-empty sequence of predict functions", predicts)
    if not all(callable(p) for p in predicts):
        raise bad_value("predicts", "time_interleaved", "callables `predict(inputs) -> Tensor`", predicts)
    inputs = check_inputs(inputs, "time_interleaved")
    check_positive_int(threads, "threads", "time_interleaved")
    check_positive_int(warmup, "warmup", "time_interleaved", minimum=0)
    check_positive_int(runs, "runs", "time_interleaved")

    k = len(predicts)
    samples = np.zeros((k, runs), dtype=np.float64)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            for predict in predicts:
                for _ in range(warmup):
                    predict(inputs)
            for r in range(runs):
                for j in range(k):
                    i = (r + j) % k
                    if rewarm:
                        predicts[i](inputs)
                    start = time.perf_counter_ns()
                    predict_out = predicts[i](inputs)
                    samples[i, r] = time.perf_counter_ns() - start
                    del predict_out
    finally:
        torch.set_num_threads(previous)
    ms = samples / 1e6
    return [
        Latency(median_ms=float(np.median(row)), p90_ms=float(np.percentile(row, 90)), runs=runs,
                p25_ms=float(np.percentile(row, 25)))
        for row in ms
    ]


def time_one(
    predict: Predict, inputs: tuple[Tensor, ...], *, threads: int = 1, warmup: int = 5, runs: int = 30
) -> Latency:
    """`time_interleaved` with a single candidate."""
    return time_interleaved([predict], inputs, threads=threads, warmup=warmup, runs=runs)[0]
