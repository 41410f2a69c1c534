"""Export a model to ONNX and let its steps rewrite the file into the deployed form (e.g. int8)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from modelpress.artifact.onnx import export_onnx
from modelpress.context import StepContext
from modelpress.pipeline.recipe import RecipeStep
from modelpress.pipeline.steps import kind_of
from modelpress.tasks.task import Task

__all__ = ["export_deployed"]


def export_deployed(
    model: nn.Module, steps: Sequence[RecipeStep], task: Task, path: str | Path, *, seed: int = 0
) -> dict[str, Any]:
    """Write ``path`` (.onnx): the fp32 export of ``model``, then each step's deploy hook in recipe order.

    Returns what the hooks reported, by step key (e.g. the chosen int8 format and why). Raises
    `CompressionError` when the export or a hook fails.
    """
    export_onnx(model, task.example_inputs, Path(path))
    ctx = StepContext(task=task, progress=False, seed=seed)
    info: dict[str, Any] = {}
    for step in steps:
        hook = kind_of(step.config).deploy
        if hook is not None:
            info[step.key] = hook(Path(path), model, step.config, ctx)
    return info
