"""Sensitivity analysis: prune one layer at a time at several ratios and measure the task metric.

The input model is never modified: every (layer, ratio) cell prunes a fresh deep copy.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from modelpress.context import StepContext
from modelpress.errors import bad_value
from modelpress.pruning.config import STRUCTURES, Prune
from modelpress.pruning.step import apply_prune, example_inputs_for, weight_targets
from modelpress.pruning.structured import plan_structured
from modelpress.select import Selector, by_name
from modelpress.tasks.task import Task

__all__ = ["SensitivityResult", "layers_for", "sensitivity"]


@dataclass(frozen=True)
class SensitivityResult:
    """The task metric after pruning each layer alone: ``values[layer][i]`` at ``ratios[i]``.

    ``baseline``: the metric of the unpruned model; ``structure``: what was pruned; ``split_size``: the
    number of test examples each cell was measured on.
    """

    structure: str
    metric_name: str
    baseline: float
    ratios: tuple[float, ...]
    values: dict[str, tuple[float, ...]]
    split_size: int

    @property
    def layers(self) -> list[str]:
        return list(self.values)

    def table(self) -> str:
        """A plain-text table: one row per layer, one column per ratio, the baseline in the header."""
        w = max([len("layer")] + [len(n) for n in self.values])
        head = f"{'layer':<{w}}  " + "  ".join(f"{r:>7.2f}" for r in self.ratios)
        title = (f"{self.metric_name} after pruning one layer ({self.structure}); "
                 f"baseline {self.baseline:.4f} on {self.split_size} test examples")
        lines = [title, head, "-" * len(head)]
        for name, vals in self.values.items():
            lines.append(f"{name:<{w}}  " + "  ".join(f"{v:>7.4f}" for v in vals))
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "structure": self.structure,
            "metric_name": self.metric_name,
            "baseline": self.baseline,
            "ratios": list(self.ratios),
            "split_size": self.split_size,
            "layers": {n: list(v) for n, v in self.values.items()},
        }

    def plot(self, path: str | Path) -> Path:
        """Write a PNG: metric against ratio, one line per layer, the baseline dashed. Returns the path."""
        import matplotlib

        matplotlib.use("Agg")  # no display here; write files only
        import matplotlib.pyplot as plt

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for name, vals in self.values.items():
            ax.plot(self.ratios, vals, marker="o", label=name)
        ax.axhline(self.baseline, color="black", linestyle="--", linewidth=1, label="baseline")
        ax.set_xlabel(f"fraction pruned ({self.structure})")
        ax.set_ylabel(self.metric_name)
        ax.set_title("Pruning sensitivity, one layer at a time")
        ax.legend(fontsize=7, loc="lower left", ncol=2 if len(self.values) > 8 else 1)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path


def layers_for(model: nn.Module, structure: str, task: Task | None = None,
               select: Selector | None = None) -> list[str]:  # fmt: skip
    """Names of the layers (or channel groups / attention blocks) that ``structure`` pruning can touch."""
    if structure == "weight":
        return [n for n, _ in weight_targets(model, StepContext(select=select))[0]]
    probe = copy.deepcopy(model)
    inputs = example_inputs_for(probe, StepContext(task=task))
    # ffn > 0 so that FFN neurons are listed for "head" (nothing is removed: this is only a plan)
    plan = plan_structured(probe, Prune(structure=structure, sparsity=0.0, ffn=0.5), inputs, select=select)
    return [u.name for u in plan.units]


def sensitivity(
    model: nn.Module,
    task: Task,
    *,
    structure: str = "weight",
    ratios: Sequence[float] = (0.25, 0.5, 0.75, 0.9),
    select: Selector | None = None,
    progress: bool = True,
    criterion: str = "l1",
    limit: int | None = None,
) -> SensitivityResult:
    """Prune each layer alone at each ratio (one-shot, no fine-tuning) and measure ``task.metric``.

    ``structure``: as in `Prune`; ``ratios``: fractions removed, each in [0, 1); ``select``: which
    layers; ``limit``: measure on the first ``limit`` test examples only (faster; None = all).
    Raises BadInputError for an unknown structure or a ratio outside [0, 1).
    """
    from tqdm.auto import tqdm

    from modelpress.tasks.train import torch_predict

    if structure not in STRUCTURES:
        raise bad_value("structure", "sensitivity", f"one of {list(STRUCTURES)}", structure)
    ratios = tuple(float(r) for r in ratios)
    if not ratios:
        raise bad_value("ratios", "sensitivity", "a non-empty list of fractions in [0, 1)", ratios)
    for r in ratios:
        Prune(structure=structure, sparsity=r)  # validates each ratio with Prune's message
    split = task.test if limit is None else task.test.head(limit)
    baseline = task.metric(torch_predict(copy.deepcopy(model)), split)
    layers = layers_for(model, structure, task, select)
    values: dict[str, tuple[float, ...]] = {}
    bar = tqdm(total=len(layers) * len(ratios), disable=None if progress else True, desc="sensitivity", leave=False)
    try:
        for name in layers:
            row = []
            ctx = StepContext(task=task, select=by_name(re.escape(name)), progress=False)
            for r in ratios:
                pruned = copy.deepcopy(model)
                apply_prune(pruned, Prune(structure=structure, sparsity=r, criterion=criterion), ctx)
                row.append(task.metric(torch_predict(pruned), split))
                bar.update(1)
            values[name] = tuple(row)
    finally:
        bar.close()
    return SensitivityResult(structure, task.metric.name, baseline, ratios, values, len(split))
