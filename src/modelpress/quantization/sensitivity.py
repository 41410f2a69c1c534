"""Mixed precision by measurement: per-layer sensitivity and the ``max_drop`` rule.

Sensitivity of a layer = the metric drop on the calibration split when *only* that layer is quantized
(the rest float), with the mean squared change of the model's outputs as the tie-breaker (on a small
split many layers change no prediction, yet some move the logits far more than others). Then every
layer is quantized and, while the drop exceeds ``max_drop``, the most sensitive layer still quantized
goes back to float. Measuring beats guessing: on MiniLM the second FFN matmuls (outliers after GELU)
are the sensitive ones, which no rule of thumb about "first and last layers" finds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor, nn

from modelpress.quantization.ptq import swap
from modelpress.tasks.task import Split, Task
from modelpress.tasks.train import torch_predict

__all__ = ["Sensitivity", "keep_float_until", "layer_sensitivity"]


@dataclass(frozen=True)
class Sensitivity:
    """Metric drop (fraction, positive = worse) and output MSE with only ``module`` quantized."""

    module: str
    drop: float
    output_mse: float


def _score(model: nn.Module, task: Task, split: Split) -> tuple[float, Tensor]:
    """The task metric on ``split`` and the raw outputs (computed once, used for both)."""
    predict = torch_predict(model, batch_size=64)
    out = predict(split.inputs)
    metric = task.metric.on_outputs(out, split)
    return metric, out


def _drop(task: Task, base: float, metric: float) -> float:
    return (base - metric) if task.metric.higher_is_better else (metric - base)


def layer_sensitivity(model: nn.Module, quantized: dict[str, nn.Module], task: Task, split: Split
                      ) -> tuple[float, Tensor, list[Sensitivity]]:
    """Quantize one layer at a time (``quantized``: name → its quantized module) and measure.

    ``model`` must be float at these names; it is restored after each measurement. Returns the float
    metric, the float outputs and the sensitivities, most sensitive first.
    """
    base, ref = _score(model, task, split)
    out: list[Sensitivity] = []
    for name, qmod in quantized.items():
        old = swap(model, name, qmod)
        try:
            metric, o = _score(model, task, split)
        finally:
            swap(model, name, old)
        mse = float((o.float() - ref.float()).pow(2).mean())
        out.append(Sensitivity(name, _drop(task, base, metric), mse))
    out.sort(key=lambda s: (s.drop, s.output_mse), reverse=True)
    return base, ref, out


def keep_float_until(model: nn.Module, originals: dict[str, nn.Module], ranked: list[Sensitivity],
                     task: Task, split: Split, base: float, max_drop: float,
                     on_revert: Callable[[str], None] | None = None) -> tuple[float, list[dict]]:
    """With every ranked layer quantized in ``model``, revert the most sensitive to float (its module in
    ``originals``) until the drop is ≤ ``max_drop``. Returns the final drop and the reverted layers with
    the reason (JSON-able)."""
    drop = _drop(task, base, _score(model, task, split)[0])
    kept: list[dict] = []
    for s in ranked:
        if drop <= max_drop:
            break
        swap(model, s.module, originals[s.module])
        kept.append({"module": s.module, "sensitivity_drop": round(s.drop, 6),
                     "sensitivity_output_mse": s.output_mse,
                     "why": f"metric drop {drop:.4f} > max_drop {max_drop} with it quantized; "
                            f"it is the most sensitive layer left"})
        if on_revert is not None:
            on_revert(s.module)
        drop = _drop(task, base, _score(model, task, split)[0])
    return drop, kept
