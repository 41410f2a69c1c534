"""Pruning sensitivity: which units each structure can prune, and the ratio sweep of the one sensitivity
analysis (`modelpress.search.sensitivity`). The input model is never modified."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING

from torch import nn

from modelpress.context import StepContext
from modelpress.errors import bad_value
from modelpress.pruning.config import STRUCTURES, Prune
from modelpress.pruning.step import example_inputs_for, weight_targets
from modelpress.pruning.structured import plan_structured
from modelpress.select import Selector
from modelpress.tasks.task import Task

if TYPE_CHECKING:
    from modelpress.search.sensitivity import SensitivityResult

__all__ = ["layers_for", "sensitivity"]


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
    """Prune each layer alone at each ratio (one-shot, no fine-tuning) and measure ``task.metric`` — the
    pruning sweep of `modelpress.search.sensitivity.sensitivity`, measured on held-out calibration
    examples (never ``test``).

    ``structure``: as in `Prune`; ``ratios``: fractions removed, each in [0, 1); ``select``: which
    layers; ``limit``: measure on at most ``limit`` examples (faster; None = all held out).
    Raises BadInputError for an unknown structure or a ratio outside [0, 1).
    """
    from modelpress.search.sensitivity import sensitivity as scan

    if structure not in STRUCTURES:
        raise bad_value("structure", "sensitivity", f"one of {list(STRUCTURES)}", structure)
    ratios = tuple(float(r) for r in ratios)
    if not ratios:
        raise bad_value("ratios", "sensitivity", "a non-empty list of fractions in [0, 1)", ratios)
    # Prune validates each ratio with its own message
    configs = [Prune(structure=structure, sparsity=r, criterion=criterion) for r in ratios]
    return scan(model, task, configs, select=select, limit=limit, progress=progress)
