"""Keep or roll back each replaced layer by what it measures: latency in the deployment runtime, or size.

Shared by the `LowRank` and `Decompose` steps: both propose a factored module per layer, and this decides,
swaps the kept ones in and writes the per-layer rows of the step's report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from modelpress.artifact.packed import PackedModule
from modelpress.context import StepContext, StepLog
from modelpress.errors import CompressionError
from modelpress.measure.layer_timing import layer_inputs, time_layer, to_batch

__all__ = ["Candidate", "judge_and_swap", "n_params"]


@dataclass
class Candidate:
    """A proposed replacement: the layer's qualified ``name``, its ``dense`` module, the ``new`` one,
    its ``rank`` (an int, or a list for Tucker) and the ``energy`` of the weight it keeps."""

    name: str
    dense: nn.Module
    new: PackedModule
    rank: Any
    energy: float


def n_params(module: nn.Module) -> int:
    """Parameters of the deployed form (a swapped module's ``export_module()``)."""
    m = module.export_module() if isinstance(module, PackedModule) else module
    return sum(p.numel() for p in m.parameters())


def _example(model: nn.Module, ctx: StepContext) -> tuple[Tensor, ...]:
    """One example to capture each layer's input with: from the task's calibration split (choices are
    judged on data held out from the final test), else built from the model's source."""
    if ctx.task is not None and len(ctx.task.calibration):
        return tuple(t[:1] for t in ctx.task.calibration.inputs)
    from modelpress.pruning.step import example_inputs_for

    return example_inputs_for(model, ctx)


def _decide(c: Candidate, x: Tensor | None, ctx: StepContext, objective: str, margin: float,
            runs: int) -> dict[str, Any]:  # fmt: skip
    before, after = n_params(c.dense), n_params(c.new)
    row: dict[str, Any] = {"module": c.name, "decision": "kept", "why": "", "rank": c.rank,
                           "params_before": before, "params_after": after, "dense_ms": None, "new_ms": None,
                           "energy": round(c.energy, 6)}  # fmt: skip
    if x is None:
        row.update(decision="rolled back", why="the layer is not called by the model's forward on the example "
                                               "inputs, so it cannot be timed")  # fmt: skip
        return row
    try:
        t = time_layer(c.dense, c.new.export_module(), to_batch(x, ctx.target.batch_size),
                       threads=ctx.target.threads, runs=runs, decide_at=1 - margin)  # fmt: skip
    except CompressionError as e:
        row.update(decision="rolled back", why=f"could not be timed in onnxruntime ({e})")
        return row
    row.update(dense_ms=round(t.dense_ms, 4), new_ms=round(t.new_ms, 4))
    ratio = t.ratio
    if objective == "latency" and ratio > 1 - margin:
        row.update(decision="rolled back", why=f"not faster: {ratio:.3f}× the dense latency (needs <= "
                                               f"{1 - margin:.2f}×, {t.rounds} round(s) timed)")  # fmt: skip
    elif objective == "size" and after >= before:
        row.update(decision="rolled back", why=f"not smaller: {after} >= {before} parameters")
    else:
        row["why"] = f"{ratio:.3f}× the dense latency, {after / before:.3f}× the parameters"
    return row


def judge_and_swap(model: nn.Module, candidates: list[Candidate], ctx: StepContext, log: StepLog, *,
                   objective: str, margin: float, runs: int) -> list[dict[str, Any]]:  # fmt: skip
    """Time every candidate against its dense layer at ``ctx.target`` (batch size, threads) in onnxruntime,
    swap in those that pass (``objective`` ``latency``: ratio of lower-quartile times <= 1 − ``margin``; ``size``: fewer
    parameters), record each swap in ``log`` and return one row per candidate for ``details['layers']``.
    """
    if not candidates:
        return []
    inputs = layer_inputs(model, [c.name for c in candidates], _example(model, ctx))
    rows = []
    for c in candidates:
        row = _decide(c, inputs.get(c.name), ctx, objective, margin, runs)
        if row["decision"] == "kept":
            model.set_submodule(c.name, c.new.train(c.dense.training))
            log.swap(c.name, c.dense, c.new)
        rows.append(row)
    return rows
