"""The student and the teacher of a `Distill` step: built, loaded, checked and sized.

- :func:`build_student`: a built-in model with its own seeded initialization, a folder or
  ``module:function`` (the CLI's ``--model`` resolver), the teacher's transformer keeping some layers, or
  the teacher narrowed by structured pruning (`modelpress.pruning`).
- :func:`resolve_teacher`: the recipe's input model, or one named like ``--model``.
- :func:`check_outputs_fit`: teacher and student must give outputs of one shape on the task's inputs.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from modelpress.artifact.resolve import check_fits, resolve_model
from modelpress.context import StepContext
from modelpress.distillation.layers import transformer_layers
from modelpress.errors import BadInputError, bad_value
from modelpress.measure.macs import count_macs
from modelpress.source import attach_source, get_source
from modelpress.tasks.models import MODEL_NAMES, build
from modelpress.tasks.task import Task

__all__ = ["build_student", "check_outputs_fit", "layer_student", "resolve_teacher", "size_row", "width_student"]


def _classes(task: Task) -> int:
    return int(task.train.targets.max()) + 1


def resolve_teacher(spec: str | None, model: nn.Module, ctx: StepContext, task: Task) -> nn.Module:
    """The teacher in eval mode: ``ctx.reference`` (else a frozen copy of ``model``) for ``spec`` None; else
    the task's trained baseline of that name, an artifact folder or a Hugging Face folder."""
    if spec is None:
        return ctx.reference if ctx.reference is not None else copy.deepcopy(model).eval()
    return resolve_model(spec, task).eval()


def _seeded_build(name: str, task: Task, seed: int) -> nn.Module:
    shape = tuple(int(s) for s in task.example_inputs[0].shape[1:])
    kwargs: dict[str, Any] = ({"num_classes": _classes(task), "pretrained": True} if name == "minilm-l6"
                              else {"input_shape": shape, "num_classes": _classes(task)})  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # the student's own initialization, the same for every run with this seed
        return build(name, **kwargs)


def _hf_config(model: nn.Module) -> Any:
    for m in model.modules():
        cfg = getattr(m, "config", None)
        if cfg is not None and hasattr(cfg, "num_hidden_layers") and hasattr(cfg, "to_dict"):
            return cfg
    return None


def _layer_source(teacher: nn.Module, student: nn.Module, config: Any) -> dict[str, Any] | None:
    """The student's source: its Hugging Face config with the new layer count (built-in MiniLM included)."""
    src = get_source(teacher)
    if src is None or config is None:
        return None
    if src.get("kind") == "hf":
        return dict(src, config=config.to_dict())
    if src.get("kind") == "builtin" and src.get("name") == "minilm-l6":
        return {"kind": "hf", "config": config.to_dict(), "wrapper": "encoder-mean-pool",
                "num_classes": int(student.head.out_features)}  # fmt: skip
    raise BadInputError(f"a `{{layers: ...}}` student of a `{src.get('kind')}` model could not be saved: its "
                        "source cannot record the new layer count. Fix: use a Hugging Face or built-in "
                        "transformer teacher, or give the student as a model.")  # fmt: skip


def layer_student(teacher: nn.Module, layers: tuple[int, ...]) -> nn.Module:
    """A copy of ``teacher`` keeping only its transformer ``layers`` (in order), weights and all — its
    embeddings, kept blocks and head are the teacher's. The Hugging Face config's ``num_hidden_layers``
    and the recorded source follow, so the artifact rebuilds it. Raises BadInputError for a model
    without transformer layers or an index out of range."""
    found = transformer_layers(teacher)
    if found is None:
        raise bad_value("student.layers", "Distill", "used with a transformer teacher (BERT-style layers)",
                        list(layers), "use {width: ...} or a model name for CNNs and MLPs.")  # fmt: skip
    if max(layers) >= len(found[1]):
        raise bad_value("student.layers", "Distill", f"indices below the teacher's {len(found[1])} layers",
                        list(layers))  # fmt: skip
    student = copy.deepcopy(teacher)
    name, blocks = transformer_layers(student)  # type: ignore[misc]
    parent, _, attr = name.rpartition(".")
    setattr(student.get_submodule(parent) if parent else student, attr, nn.ModuleList(blocks[i] for i in layers))
    config = _hf_config(student)  # a copy, shared by the student's modules; the teacher's is untouched
    if config is not None:
        config.num_hidden_layers = len(layers)
    source = _layer_source(teacher, student, config)
    return attach_source(student, source) if source is not None else student


def width_student(teacher: nn.Module, width: float, round_to: int, task: Task) -> tuple[nn.Module, dict]:
    """A copy of ``teacher`` with every hidden width scaled by ``width`` by structured pruning (L1 ranks):
    attention heads and FFN neurons of transformers, conv channels of CNNs, Linear neurons of MLPs; the
    outputs are kept. Returns the student and the pruning log's details."""
    from modelpress.pruning.config import Prune
    from modelpress.pruning.step import apply_prune
    from modelpress.pruning.structured import find_attention

    if find_attention(teacher):
        structure = "head"
    elif any(isinstance(m, nn.modules.conv._ConvNd) for m in teacher.modules()):
        structure = "channel"
    else:
        structure = "neuron"
    student = copy.deepcopy(teacher)
    prune = Prune(structure=structure, sparsity=1.0 - width, scope="layer", criterion="l1", round_to=round_to)
    log = apply_prune(student, prune, StepContext(task=task, progress=False))
    return student, {"structure": structure, "units": log.details.get("units", {})}


def build_student(spec: Any, model: nn.Module, teacher: nn.Module, task: Task,
                  seed: int = 0) -> tuple[nn.Module, dict]:  # fmt: skip
    """The student for `Distill.student` ``spec`` (canonical form) and details of how it was built.

    None → ``model`` itself; a built-in model name → built fresh for the task with ``seed``; any other
    name → `resolve_model` (artifact folder, Hugging Face folder, ``module:function``);
    ``{"layers": ...}`` → `layer_student`; ``{"width": ...}`` → `width_student`.
    """
    if spec is None:
        return model, {"kind": "the model being compressed"}
    if isinstance(spec, str):
        if spec in MODEL_NAMES:
            return _seeded_build(spec, task, seed), {"kind": "built-in, own initialization", "name": spec}
        return resolve_model(spec, task), {"kind": "loaded", "name": spec}
    if "layers" in spec:
        return layer_student(teacher, spec["layers"]), {"kind": "teacher's layers", "layers": list(spec["layers"])}
    student, info = width_student(teacher, spec["width"], spec["round_to"], task)
    return student, {"kind": "teacher narrowed", "width": spec["width"], **info}


def check_outputs_fit(teacher: nn.Module, student: nn.Module, task: Task) -> None:
    """Raise BadInputError unless both models run on the task's inputs and give outputs of one shape."""
    check_fits(student, task)
    check_fits(teacher, task)
    shapes = []
    for m in (teacher, student):
        was = m.training
        with torch.no_grad():
            shapes.append(tuple(m.eval()(*task.example_inputs).shape[1:]))
        m.train(was)
    if shapes[0] != shapes[1]:
        raise bad_value("teacher", "Distill", f"a model whose outputs fit task `{task.name}` like the "
                        f"student's (per-example shape {shapes[1]})", f"outputs of shape {shapes[0]}",
                        "pick a teacher trained on this task (same classes), e.g. one of "
                        f"{list(task.model_names)}.")  # fmt: skip


def size_row(model: nn.Module, task: Task) -> dict[str, int]:
    """``{"params", "macs"}`` of ``model`` (MACs of one example, `count_macs`)."""
    return {"params": sum(p.numel() for p in model.parameters()), "macs": count_macs(model, task.example_inputs)}
