"""Turn the user's words (`--task`, `--model`) into a Task and a model.

A task is a built-in name (``modelpress tasks``) or ``package.module:function`` returning a `Task`.
A model is a built-in model name, a saved artifact folder, a Hugging Face model folder, a weights file
(``.safetensors``, or ``.pt``/``.pth`` read with ``weights_only=True``) for the task's default
architecture, or ``package.module:function`` returning an ``nn.Module``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from modelpress import tasks
from modelpress.artifact import load
from modelpress.artifact.weights import read_weights
from modelpress.errors import BadInputError
from modelpress.source import attach_source, get_source, import_ref
from modelpress.tasks.minilm import from_hf_folder
from modelpress.tasks.task import Task

__all__ = ["check_fits", "load_callable", "resolve_model", "resolve_task"]


def check_fits(model: nn.Module, task: Task) -> None:
    """Run ``model`` once on the task's example inputs; a model built for other data is a clear error."""
    modes = {m: m.training for m in model.modules()}
    try:
        with torch.no_grad():
            model.eval()(*task.example_inputs)
    except (RuntimeError, ValueError, TypeError, IndexError) as e:
        shapes = [tuple(t.shape[1:]) for t in task.test.inputs]
        raise BadInputError(
            f"the model does not run on task `{task.name}`'s inputs (per-example shapes {shapes}): "
            f"{str(e).splitlines()[0] if str(e) else type(e).__name__}. Fix: pass a model built for this task."
        ) from e
    finally:
        for m, training in modes.items():
            m.train(training)



def load_callable(ref: str) -> Callable[..., Any]:
    """Import ``package.module:function`` and return the function."""
    fn = import_ref(ref, "function")
    if not callable(fn):
        raise BadInputError(f"{ref!r} is a {type(fn).__name__}, not a function.")
    return fn


def resolve_task(spec: str | Task) -> Task:
    """A `Task` from a built-in name or ``module:function``."""
    if isinstance(spec, Task):
        return spec
    if ":" in spec:
        task = load_callable(spec)()
        if not isinstance(task, Task):
            raise BadInputError(f"`{spec}` must return a modelpress Task; got {type(task).__name__}.")
        return task
    return tasks.get(spec)


def resolve_model(spec: str | None, task: Task) -> nn.Module:
    """The model named by ``spec`` for ``task`` (None → the task's trained default model)."""
    if spec is None:
        return task.model()
    path = Path(spec)
    if path.is_dir():
        if (path / "manifest.json").is_file():
            return load(path)
        if (path / "config.json").is_file():
            return from_hf_folder(path, num_classes=int(task.train.targets.max()) + 1)
        raise BadInputError(
            f"folder `{spec}` is neither a modelpress artifact (no manifest.json) nor a Hugging Face model "
            "folder (no config.json)."
        )
    if path.suffix in {".pt", ".pth", ".safetensors", ".bin", ".pkl", ".ckpt"}:
        if not path.is_file():
            raise BadInputError(f"model file `{spec}` does not exist. Fix: check the path.")
        model = task.model()
        state = read_weights(path)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise BadInputError(
                f"weights in `{spec}` do not fit the task's default model `{task.default_model}`: "
                f"{str(e).splitlines()[0]}. Fix: save a state_dict of that architecture, or pass --model "
                "module:function to build your own."
            ) from e
        return model
    if ":" in spec:
        model = load_callable(spec)()
        if not isinstance(model, nn.Module):
            raise BadInputError(f"`{spec}` must return a torch nn.Module; got {type(model).__name__}.")
        if get_source(model) is None:
            attach_source(model, {"kind": "callable", "ref": spec, "kwargs": {}})
        return model
    if spec in task.model_names:
        return task.model(spec)
    raise BadInputError(
        f"`model` must be one of task `{task.name}`'s models {list(task.model_names)}, an artifact folder, "
        f"a Hugging Face folder, a weights file or module:function; got {spec!r}."
    )
