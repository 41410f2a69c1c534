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
    the chosen int8 format and why), under ``"runtime"`` the runtime choice when no hook made one
    (`modelpress.pipeline.deploy_runtime`), and under ``"shipped"`` what the written file holds: ``runtime``
    (``onnxruntime``, ``openvino`` or ``executorch``), ``file`` (``path``'s name, or the IR ``model.xml``
    or the ExecuTorch ``model.pte`` written beside it; for ExecuTorch also ``ops``: delegated / portable), ``format`` (`modelpress.measure.onnx_graph.onnx_format` of the graph; for OpenVINO the format
    it executes), ``layers`` per kind, ``ops`` per op type, ``bytes``. Raises `CompressionError` when the
    export or a hook fails, `BadInputError` for target runtime ``openvino`` / ``executorch`` without it installed.
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
    chosen = [v for v in info.values() if isinstance(v, dict) and "runtime" in v]  # a hook chose the runtime
    if not chosen and ctx.target.runtime != "onnxruntime":
        from modelpress.measure.executorch_runtime import executorch_available
        from modelpress.measure.openvino_runtime import openvino_available
        from modelpress.pipeline.deploy_runtime import choose_runtime

        if openvino_available() or executorch_available() or ctx.target.runtime != "auto":
            info["runtime"] = choose_runtime(Path(path), model, ctx)
            chosen = [info["runtime"]]
        else:
            info["runtime"] = {"runtime": "onnxruntime",
                               "notes": ["OpenVINO and ExecuTorch are not installed: onnxruntime only"]}
    layers: dict[str, int] = {}
    for lf in layer_formats(path):
        layers[lf.kind] = layers.get(lf.kind, 0) + 1
    info["shipped"] = {"runtime": "onnxruntime", "file": Path(path).name, "format": onnx_format(path),
                       "layers": layers, "ops": op_counts(path), "bytes": onnx_bytes(path)}
    if chosen and chosen[-1]["runtime"] == "openvino":
        info["shipped"] |= _openvino_shipped(Path(path), chosen[-1])
    if chosen and chosen[-1]["runtime"] == "executorch":
        info["shipped"] |= _executorch_shipped(Path(path), chosen[-1], info["shipped"]["layers"])
    return info


def _executorch_shipped(path: Path, chosen: dict[str, Any], onnx_layers: dict[str, int]) -> dict[str, Any]:
    """The shipped ``model.pte`` beside ``path``: its mode, bytes and which ops XNNPACK took (from the
    lowering) and which fell back to portable kernels; the ONNX graph keeps its figures under ``onnx_*``."""
    from modelpress.measure.executorch_runtime import pte_bytes
    from modelpress.measure.onnx_size import onnx_bytes

    pte = path.with_suffix(".pte")
    fmt = chosen.get("format") or "float32"
    fmt = "float32" if fmt == "fp32" else fmt
    et = chosen.get("executorch", {})
    delegated = et.get("ops", {}).get("delegated", {})
    weighted = sum(n for op, n in delegated.items() if op in ("aten::linear", "aten::convolution"))
    return {"runtime": "executorch", "file": pte.name, "format": fmt, "bytes": pte_bytes(pte),
            "layers": {}, "delegated_weighted_layers": weighted, "onnx_layers": onnx_layers,
            "onnx_bytes": onnx_bytes(path), **et}


def _openvino_shipped(path: Path, chosen: dict[str, Any]) -> dict[str, Any]:
    """What the shipped IR beside ``path`` executes (read off the compiled model) and its bytes; the
    ONNX graph it was converted from keeps its own figures under ``onnx_*``."""
    from modelpress.measure.onnx_size import onnx_bytes
    from modelpress.measure.openvino_runtime import compile_openvino, executed_format, ir_bytes

    xml = path.with_suffix(".xml")
    executed = executed_format(compile_openvino(xml))
    fmt = chosen.get("format") or {"f32": "float32", "bf16": "bf16", "f16": "fp16"}[executed.precision]
    return {"runtime": "openvino", "file": xml.name, "format": fmt, "precision": executed.precision,
            "executed_layers": executed.layers, "bytes": ir_bytes(xml), "onnx_bytes": onnx_bytes(path)}
