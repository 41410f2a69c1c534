"""modelpress: compress PyTorch models for small devices — measured honestly, composed freely.

>>> import modelpress as mp
>>> task = mp.tasks.get("mnist-5k")
>>> model = task.model()                                   # the trained baseline (cached)
>>> log = mp.compress_(model, mp.Prune(sparsity=0.9), select=mp.select.by_type(nn.Linear))
>>> stats = mp.measure(model, task)                        # Stats: size_bytes, latency_ms, metric, ...
>>> mp.save(model, "out/model"); model = mp.load("out/model")

Names are imported on first use, so ``import modelpress`` stays fast and light.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# `measure` is the measuring subpackage; it is callable, so `mp.measure(model, task)` measures a model.
_SUBMODULES = {"measure": "modelpress.measure", "select": "modelpress.select", "tasks": "modelpress.tasks"}
# public name → module that defines it
_LAZY = {
    "save": "modelpress.artifact",
    "load": "modelpress.artifact",
    "StepLog": "modelpress.context",
    "BadInputError": "modelpress.errors",
    "CompressionError": "modelpress.errors",
    "ModelpressError": "modelpress.errors",
    "FineTune": "modelpress.finetune",
    "Prune": "modelpress.pruning",
    "Quantize": "modelpress.quantization",
    "measure_onnx": "modelpress.measure",
    "compare": "modelpress.measure",
    "compare_models": "modelpress.measure",
    "Stats": "modelpress.measure.stats",
    "MeasureSettings": "modelpress.pipeline",
    "Recipe": "modelpress.pipeline",
    "RunResult": "modelpress.pipeline",
    "compress_": "modelpress.pipeline",
    "run": "modelpress.pipeline",
    "Metric": "modelpress.tasks.task",
    "Split": "modelpress.tasks.task",
    "Task": "modelpress.tasks.task",
}

__all__ = [  # noqa: PLE0604 (built from the tables above, all strings)
    "__version__", *_SUBMODULES, *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        value = importlib.import_module(_SUBMODULES[name])
    elif name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    else:
        raise AttributeError(f"module 'modelpress' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
