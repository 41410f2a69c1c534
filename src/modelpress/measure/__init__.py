"""Measuring: size on disk, params, non-zeros, MACs, latency, peak memory, the task metric (DESIGN §5).

>>> stats = measure(model, task)            # torch, in this process       # doctest: +SKIP
>>> deployed = measure_onnx("model.onnx", task, macs=stats.macs)          # doctest: +SKIP
>>> print(compare(stats, deployed).table())                             # doctest: +SKIP
"""

from modelpress.measure import latency, macs, memory, onnx_size, runtime, size, stats
from modelpress.measure.compare import Comparison, compare, compare_models, format_stats
from modelpress.measure.latency import Latency, time_interleaved, time_one
from modelpress.measure.macs import count_macs
from modelpress.measure.measure import measure, measure_onnx, measure_openvino
from modelpress.measure.stats import Stats

__all__ = [
    "Comparison",
    "Latency",
    "Stats",
    "compare",
    "compare_models",
    "count_macs",
    "format_stats",
    "latency",
    "macs",
    "measure",
    "measure_onnx",
    "measure_openvino",
    "memory",
    "onnx_size",
    "runtime",
    "size",
    "stats",
    "time_interleaved",
    "time_one",
]
