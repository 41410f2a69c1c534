"""Export a model to ONNX and let its steps rewrite the file into the deployed form (e.g. int8)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from modelpress.artifact.onnx import export_onnx
from modelpress.context import DeployTarget, StepContext
from modelpress.pipeline.recipe import RecipeStep
from modelpress.pipeline.steps import kind_of
from modelpress.tasks.task import Task

__all__ = ["export_deployed"]


def export_deployed(
    model: nn.Module,
    steps: Sequence[RecipeStep],
    task: Task,
    path: str | Path,
    *,
    seed: int = 0,
    reference: nn.Module | None = None,
    target: DeployTarget | None = None,
) -> dict[str, Any]:
    """Write ``path`` (.onnx): the fp32 export of ``model``, then each step's deploy hook in recipe order.

    ``reference``: the fp32 model the recipe started from (hooks judge their candidates by fidelity to
    it); ``target``: the runtime setting they time in. Returns what the hooks reported, by step key (e.g.
    the chosen int8 format and why), and under ``"shipped"`` what the written file holds, read from its
    graph: ``format`` (`modelpress.measure.onnx_graph.onnx_format`), ``layers`` per kind, ``ops`` per op
    type, ``bytes``. Raises `CompressionError` when the export or a hook fails.
    """
    from modelpress.measure.onnx_graph import layer_formats, onnx_format, op_counts
    from modelpress.measure.onnx_size import onnx_bytes

    export_onnx(model, task.example_inputs, Path(path))
    ctx = StepContext(task=task, progress=False, seed=seed, reference=reference, target=target or DeployTarget())
    info: dict[str, Any] = {}
    for step in steps:
        hook = kind_of(step.config).deploy
        if hook is not None:
            info[step.key] = hook(Path(path), model, step.config, ctx)
    layers: dict[str, int] = {}
    for lf in layer_formats(path):
        layers[lf.kind] = layers.get(lf.kind, 0) + 1
    info["shipped"] = {"format": onnx_format(path), "layers": layers, "ops": op_counts(path),
                       "bytes": onnx_bytes(path)}
    return info
