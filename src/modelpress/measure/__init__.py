"""Measuring: size on disk, params, non-zeros, MACs, latency, peak memory, the task metric.

The subpackage is callable: ``modelpress.measure(model, task)`` is ``modelpress.measure.measure(model,
task)``, so ``mp.measure(...)`` and ``import modelpress.measure.size`` both work (a plain function bound
to the name would hide the subpackage).

>>> stats = measure(model, task)            # torch, in this process       # doctest: +SKIP
>>> deployed = measure_onnx("model.onnx", task, macs=stats.macs)          # doctest: +SKIP
>>> print(compare(stats, deployed).table())                             # doctest: +SKIP
"""

import sys
import types
from typing import Any

from modelpress.measure import latency, macs, memory, onnx_size, runtime, size, stats
from modelpress.measure.compare import Comparison, compare, compare_models, format_stats
from modelpress.measure.latency import Latency, time_interleaved, time_one
from modelpress.measure.macs import count_macs
from modelpress.measure.measuring import measure, measure_executorch, measure_onnx, measure_openvino
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
    "measure_executorch",
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


class _CallablePackage(types.ModuleType):
    """The type of this subpackage: a module whose call is `measure`."""

    def __call__(self, *args: Any, **kwargs: Any) -> Stats:
        return measure(*args, **kwargs)


_CallablePackage.__call__.__doc__ = measure.__doc__
sys.modules[__name__].__class__ = _CallablePackage
