"""Turn a model spec (the CLI's ``--model``, a `Distill` student or teacher) into a model.

A model is a built-in model name of the task, a saved artifact folder, a Hugging Face model folder, a
weights file (``.safetensors``, or ``.pt``/``.pth`` read with ``weights_only=True``) for the task's default
architecture, or ``package.module:function`` returning an ``nn.Module``. This lives in the artifact layer,
below the techniques, because opening a model is what a technique needs too (a distillation teacher
named by a folder); everything it uses (artifact loading, tasks, sources) is at or below this layer.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from modelpress.artifact.loading import load
from modelpress.artifact.weights import check_finite, check_shapes, read_weights
from modelpress.errors import BadInputError, ModelpressError
from modelpress.source import attach_source, get_source, import_ref
from modelpress.tasks.minilm import from_hf_folder
from modelpress.tasks.task import Task

__all__ = ["call_user", "check_fits", "check_model_finite", "check_model_spec", "load_callable", "resolve_model"]


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



def check_model_finite(model: nn.Module, what: str = "the model") -> None:
    """Refuse a model with NaN / Inf in a parameter or buffer, naming the first such tensor and the counts.

    Raises BadInputError ("tensor `fc1.weight` of --model x.pt holds 1 NaN and 0 Inf of 235,200 values ...").
    """
    check_finite(model.state_dict(), what)


def load_callable(ref: str, flag: str = "function") -> Callable[..., Any]:
    """Import ``package.module:function`` and return the function (``flag`` names it in errors).

    Raises BadInputError when it cannot be imported, is not callable, or needs arguments;
    ModelpressError (exit 1) when importing its module raises.
    """
    try:
        fn = import_ref(ref, flag)
    except BadInputError:
        raise
    except Exception as e:  # the user's module raised while being imported
        raise ModelpressError(f"importing `{flag} {ref}` raised {type(e).__name__}: {e}") from e
    if not callable(fn):
        raise BadInputError(f"`{flag} {ref}` is a {type(fn).__name__}, not a function. "
                            "Fix: name a function that takes no arguments.")
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: calling it tells
        return fn
    needed = [p.name for p in params if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if needed:
        raise BadInputError(f"`{flag} {ref}` must take no arguments; it needs {needed}. Fix: give them "
                            "defaults, or wrap it in a function without arguments.")
    return fn


def call_user(ref: str, flag: str) -> Any:
    """Import and call the user's ``package.module:function``; what it raises becomes one line (exit 1)."""
    fn = load_callable(ref, flag)
    try:
        return fn()
    except ModelpressError:
        raise
    except Exception as e:
        raise ModelpressError(f"`{flag} {ref}` raised {type(e).__name__}: {e}") from e


_WEIGHT_SUFFIXES = {".pt", ".pth", ".safetensors", ".bin", ".pkl", ".ckpt"}


def check_model_spec(spec: str | None) -> None:
    """Check what can be checked of ``--model`` before any data is loaded: paths that must exist.

    Raises BadInputError for a missing weights / ONNX / OpenVINO IR file or a folder that is neither an artifact nor a
    Hugging Face model folder.
    """
    if spec is None:
        return
    path = Path(spec)
    if path.name == "manifest.json":
        path = path.parent
    if path.is_dir():
        if not ((path / "manifest.json").is_file() or (path / "config.json").is_file()):
            raise BadInputError(
                f"folder `{spec}` is neither a modelpress artifact (no manifest.json) nor a Hugging Face model "
                "folder (no config.json). Fix: pass the folder that `modelpress compress` wrote as DIR/model."
            )
    elif path.suffix.lower() in _WEIGHT_SUFFIXES | {".onnx", ".xml"} and not path.is_file():
        raise BadInputError(f"model file `{spec}` does not exist. Fix: check the path.")


def resolve_model(spec: str | None, task: Task, *, trust_source: bool = False) -> nn.Module:
    """The model named by ``spec`` for ``task`` (None → the task's trained default model).

    ``trust_source``: let an artifact whose source is a user's ``module:function`` run it
    (``--trust-source``). Raises BadInputError for a spec that names nothing usable, for an untrusted
    function source, and for non-finite weights.
    """
    model = _build_model(spec, task, trust_source)
    check_model_finite(model, f"--model {spec}" if spec else f"the default model of task `{task.name}`")
    return model


def _build_model(spec: str | None, task: Task, trust_source: bool) -> nn.Module:
    if spec is None:
        return task.model()
    check_model_spec(spec)
    path = Path(spec)
    if path.name == "manifest.json" and path.is_file():  # `load` accepts the manifest's own path too
        path = path.parent
    if path.is_dir():
        if (path / "manifest.json").is_file():
            return load(path, trust_source=trust_source)
        return from_hf_folder(path, num_classes=int(task.train.targets.max()) + 1)
    if path.suffix.lower() in _WEIGHT_SUFFIXES:
        return _from_weights(path, task)
    if ":" in spec:
        model = call_user(spec, "--model")
        if not isinstance(model, nn.Module):
            raise BadInputError(f"`--model {spec}` must return a torch nn.Module; got {type(model).__name__}.")
        if get_source(model) is None:
            attach_source(model, {"kind": "callable", "ref": spec, "kwargs": {}})
        return model
    if spec in task.model_names:
        return task.model(spec)
    raise BadInputError(
        f"`--model` must be one of task `{task.name}`'s models {list(task.model_names)}, an artifact folder, "
        f"a Hugging Face folder, a weights file or module:function; got {spec!r}."
    )


def _from_weights(path: Path, task: Task) -> nn.Module:
    """The task's default architecture with the state dict read (never unpickled) from ``path``."""
    model = task.model()
    state = read_weights(path)
    check_shapes(model, state, f"`{path}`")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        # torch's first line is only "Error(s) in loading state_dict for X:"; the tensors and shapes follow
        why = " ".join(ln.strip() for ln in str(e).splitlines()[1:] if ln.strip())[:600] or str(e)
        raise BadInputError(
            f"weights in `{path}` do not fit the task's default model `{task.default_model}`: "
            f"{why.rstrip('.')}. Fix: save a state_dict of that architecture, or pass --model "
            "module:function to build your own."
        ) from e
    return model
