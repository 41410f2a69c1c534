"""Post-training quantization: which layers, their activation ranges, and the module swaps.

Layers are chosen by type (Linear, Conv2d, and Embedding when asked) and by the step's selector;
static activation ranges are observed on the task's calibration split with forward pre-hooks on the
float model (as onnxruntime's calibrator does), then each layer is swapped for its quantized module.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize

from modelpress.context import Skipped
from modelpress.errors import bad_value
from modelpress.quantization.config import Quantize
from modelpress.quantization.modules import HALF_TYPES, QUANT_TYPES, WeightSpec, _Half, _Quantized
from modelpress.quantization.observers import RangeObserver
from modelpress.select import Selector
from modelpress.tasks.task import Split

__all__ = ["Plan", "calibrate_inputs", "calibration_split", "plan_layers", "quantized_module", "swap"]


@dataclass(frozen=True)
class Plan:
    """One layer to quantize: its qualified name, weight spec and activation mode."""

    name: str
    spec: WeightSpec
    act: str


def calibration_split(split: Split | None, size: int) -> Split:
    """The first ``size`` calibration examples; a clear error when there are none."""
    if split is None or len(split) == 0:
        raise bad_value("calibration", "Quantize", "a task with a non-empty calibration split", split,
                        "give the Task a calibration split (a few hundred training examples).")
    return split.head(size)


def plan_layers(model: nn.Module, config: Quantize, select: Selector | None) -> tuple[list[Plan], list[Skipped]]:
    """The layers ``config`` will quantize, in module order, and those skipped with the reason."""
    plans: list[Plan] = []
    skipped: list[Skipped] = []
    bits = config.weight_bits
    for name, m in model.named_modules():
        # exact types (subclasses may change forward); a pruned layer's class is a parametrized subclass
        # of its original, whose `.weight` is the masked weight: quantizing it keeps the zeros exact.
        if parametrize.type_before_parametrizations(m) not in QUANT_TYPES:
            continue
        if select is not None and not select(name, m):
            continue
        if not name:
            skipped.append(Skipped("(root)", "the model itself is one layer; wrap it in a module to quantize it"))
            continue
        if isinstance(m, nn.Embedding) and not config.quantize_embeddings:
            skipped.append(Skipped(name, "embedding kept in float (quantize_embeddings: false)"))
            continue
        if isinstance(m, nn.Conv2d) and m.padding_mode != "zeros":
            skipped.append(Skipped(name, f"padding_mode {m.padding_mode!r} has no quantized form here"))
            continue
        if isinstance(m, nn.Embedding) and (m.max_norm is not None or m.sparse):
            skipped.append(Skipped(name, "embedding with max_norm / sparse gradients kept in float"))
            continue
        if bits is None:
            plans.append(Plan(name, WeightSpec(), "none"))
            continue
        gran = config.weight_granularity
        row = m.weight[0].numel()
        if gran == "group" and row % config.group_size:
            # a row shorter than / not divisible by the group (LeNet's 5×5×1 conv): one scale per row
            gran = "channel"
        observer = "mse" if config.observer == "mse" else "minmax"
        spec = WeightSpec(bits, gran, config.group_size, config.symmetric, observer)
        act = "none" if isinstance(m, nn.Embedding) else config.activations
        plans.append(Plan(name, spec, act))
    return plans, skipped


def calibrate_inputs(model: nn.Module, names: list[str], split: Split, *, method: str = "minmax",
                     percentile: float = 99.99, batch_size: int = 32) -> dict[str, tuple[float, int]]:
    """uint8 ``(scale, zero_point)`` of the input of each named module, observed on ``split``."""
    if not names:
        return {}
    observers = {n: RangeObserver(method, percentile) for n in names}
    handles = []
    for n in names:
        obs = observers[n]
        handles.append(model.get_submodule(n).register_forward_pre_hook(
            lambda _m, args, obs=obs: obs.update(args[0])))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for inputs, _ in split.batches(batch_size):
                model(*inputs)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return {n: obs.qparams() for n, obs in observers.items() if obs.seen}


def quantized_module(float_module: nn.Module, plan: Plan, config: Quantize,
                     act_qparams: dict[str, tuple[float, int]]) -> _Quantized | _Half:
    """The quantized (or 16-bit) replacement of one float module."""
    if config.weight_bits is None:
        dtype = torch.bfloat16 if config.mode == "bf16" else torch.float16
        return HALF_TYPES[parametrize.type_before_parametrizations(float_module)].from_float(float_module, dtype)
    act, s, z = plan.act, 1.0, 0
    if act == "static":
        if plan.name not in act_qparams:
            act = "none"  # never reached by calibration data: nothing to quantize it with
        else:
            s, z = act_qparams[plan.name]
    return QUANT_TYPES[parametrize.type_before_parametrizations(float_module)].from_float(float_module, plan.spec, act=act, act_scale=s, act_zp=z)


def swap(model: nn.Module, name: str, new: nn.Module) -> nn.Module:
    """Put ``new`` at ``name`` in ``model``; return the module that was there."""
    old = model.get_submodule(name)
    model.set_submodule(name, new)
    return old
