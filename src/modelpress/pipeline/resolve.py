"""Turn the user's words (`--task`, `--model`) into a Task and a model.

A task is a built-in name (``modelpress tasks``) or ``package.module:function`` returning a `Task`.
Models are resolved by `modelpress.artifact.resolve` (a lower layer, so that techniques can open a
model too); its names are re-exported here for the CLI and the pipeline.
"""

from __future__ import annotations

import difflib

import torch
from torch import nn

from modelpress import tasks
from modelpress.artifact.resolve import (
    call_user,
    check_fits,
    check_model_finite,
    check_model_spec,
    load_callable,
    resolve_model,
)
from modelpress.artifact.weights import check_finite
from modelpress.errors import BadInputError
from modelpress.tasks.task import Split, Task
from modelpress.tasks.train import torch_predict

__all__ = [
    "call_user",
    "check_fits",
    "check_model_finite",
    "check_model_spec",
    "load_callable",
    "nonfinite_outputs",
    "nonfinite_weights",
    "resolve_model",
    "resolve_task",
]


def nonfinite_weights(model: nn.Module) -> str | None:
    """Which tensor of ``model`` (parameters and buffers) holds NaN / Inf, with counts; None when all are finite."""
    try:
        check_finite(model.state_dict(), "the model")
    except BadInputError as e:
        return str(e).split("; modelpress measures")[0]
    return None


def nonfinite_outputs(model: nn.Module, split: Split, limit: int = 128) -> str | None:
    """Why ``model``'s outputs on the first ``limit`` examples of ``split`` are not all finite, or None.

    Runs in eval mode without gradients and restores each module's training flag.
    """
    modes = {m: m.training for m in model.modules()}
    inputs = tuple(t[:limit] for t in split.inputs)
    try:
        out = torch_predict(model)(inputs)
    finally:
        for m, training in modes.items():
            m.train(training)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    total = sum(o.numel() for o in outs if isinstance(o, torch.Tensor))
    bad = sum(int((~torch.isfinite(o)).sum()) for o in outs if isinstance(o, torch.Tensor) and o.is_floating_point())
    if not bad:
        return None
    return f"{bad:,} of {total:,} output values are NaN or Inf on {len(inputs[0])} `{split.name}` examples"


def resolve_task(spec: str | Task) -> Task:
    """A `Task` from a built-in name or ``module:function``."""
    if isinstance(spec, Task):
        return spec
    if ":" in spec:
        task = call_user(spec, "--task")
        if not isinstance(task, Task):
            raise BadInputError(f"`--task {spec}` must return a modelpress Task; got {type(task).__name__}.")
        return task
    if spec not in tasks.names():
        close = difflib.get_close_matches(str(spec), tasks.names(), n=1)
        hint = f" Did you mean `{close[0]}`?" if close else ""
        raise BadInputError(f"`--task` must be a built-in task {tasks.names()} (see `modelpress tasks`) or "
                            f"package.module:function; got {spec!r}.{hint}")
    return tasks.get(spec)
