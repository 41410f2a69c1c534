"""Mixed precision by measurement: per-layer sensitivity and the ``max_drop`` rule.

Sensitivity of a layer = the metric drop on the calibration split when *only* that layer is quantized
(the rest float), with the mean squared change of the model's outputs as the tie-breaker (on a small
split many layers change no prediction, yet some move the logits far more than others); measured by the
one sensitivity loop, `modelpress.search.sensitivity.one_at_a_time`, with the ready quantized modules
swapped in and back. Then every layer is quantized and, while the drop exceeds ``max_drop``, the most
sensitive layer still quantized goes back to float. Measuring beats guessing: on MiniLM the second FFN
matmuls (outliers after GELU) are the sensitive ones, which no rule of thumb about "first and last
layers" finds.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from modelpress.quantization.ptq import swap
from modelpress.search.sensitivity import LayerScore, metric_drop, one_at_a_time, score
from modelpress.tasks.task import Split, Task

__all__ = ["keep_float_until", "layer_sensitivity"]


def layer_sensitivity(model: nn.Module, quantized: dict[str, nn.Module], task: Task, split: Split
                      ) -> tuple[float, Tensor, list[LayerScore]]:
    """Quantize one layer at a time (``quantized``: name → its quantized module) and measure.

    ``model`` must be float at these names; it is restored after each measurement. Returns the float
    metric, the float outputs and the sensitivities, most sensitive first.
    """
    def change(name: str) -> Callable[[], None]:
        old = swap(model, name, quantized[name])
        return lambda: swap(model, name, old)

    return one_at_a_time(model, list(quantized), change, task, split)


def keep_float_until(model: nn.Module, originals: dict[str, nn.Module], ranked: list[LayerScore],
                     task: Task, split: Split, base: float, max_drop: float,
                     on_revert: Callable[[str], None] | None = None) -> tuple[float, list[dict]]:
    """With every ranked layer quantized in ``model``, revert the most sensitive to float (its module in
    ``originals``) until the drop is ≤ ``max_drop``. Returns the final drop and the reverted layers with
    the reason (JSON-able)."""
    drop = metric_drop(task, base, score(model, task, split)[0])
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
        drop = metric_drop(task, base, score(model, task, split)[0])
    return drop, kept
