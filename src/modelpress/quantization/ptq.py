"""Post-training quantization: which layers, their activation ranges, and the module swaps.

Layers are chosen by `modelpress.select.targets` (Linear, Conv2d, and Embedding when asked; subclasses
too) and the step's selector;
static activation ranges are observed on the task's calibration split with forward pre-hooks on the
float model (as onnxruntime's calibrator does), then each layer is swapped for its quantized module.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from modelpress.context import Skipped
from modelpress.errors import bad_value
from modelpress.quantization.config import Quantize
from modelpress.quantization.gptq import gptq_codes
from modelpress.quantization.modules import HALF_TYPES, QUANT_TYPES, WeightSpec, _Half, _Quantized, op_meta
from modelpress.quantization.observers import RangeObserver, observe_inputs
from modelpress.quantization.wrapped import KeepForward
from modelpress.select import Selector, targets, tied_weights
from modelpress.tasks.task import Split

__all__ = ["Plan", "calibrate_inputs", "calibration_split", "plan_layers", "quantized_module", "swap"]


@dataclass(frozen=True)
class Plan:
    """One layer to quantize: its qualified name, weight spec, activation mode, the standard type it is
    quantized as (``base``: nn.Linear / nn.Conv2d / nn.Embedding) and whether its class has its own
    forward, which the quantized layer keeps (`KeepForward`)."""

    name: str
    spec: WeightSpec
    act: str
    base: type[nn.Module] = nn.Linear
    custom_forward: bool = False


def calibration_split(split: Split | None, size: int) -> Split:
    """The first ``size`` calibration examples; a clear error when there are none."""
    if split is None or len(split) == 0:
        raise bad_value("calibration", "Quantize", "a task with a non-empty calibration split", split,
                        "give the Task a calibration split (a few hundred training examples).")
    return split.head(size)


def _why_not(name: str, m: nn.Module, config: Quantize) -> str | None:
    """Why layer ``m`` stays float, or None when it can be quantized."""
    if not name:
        return "the model itself is one layer; wrap it in a module to quantize it"
    if isinstance(m, nn.Embedding) and not config.quantize_embeddings:
        return "embedding kept in float (quantize_embeddings: false)"
    if isinstance(m, nn.Conv2d) and m.padding_mode != "zeros":
        return f"padding_mode {m.padding_mode!r} has no quantized form here"
    if isinstance(m, nn.Embedding) and (m.max_norm is not None or m.sparse):
        return "embedding with max_norm / sparse gradients kept in float"
    return None


def plan_layers(model: nn.Module, config: Quantize, select: Selector | None) -> tuple[list[Plan], list[Skipped]]:
    """The layers ``config`` will quantize, in module order, and those skipped with the reason.

    Which layers: `modelpress.select.targets` over Linear / Conv2d / Embedding (subclasses included; a
    subclass with its own forward keeps it). A pruned layer is a parametrized subclass of its original,
    whose ``.weight`` is the masked weight: quantizing it keeps the zeros exact. Every other selected
    module with weights (a custom layer, an ``nn.GRU``) is returned as skipped, with the reason.
    """
    found, skipped = targets(model, select, tuple(QUANT_TYPES), step=f"quantize ({config.mode})")
    tied = tied_weights(model)
    plans: list[Plan] = []
    bits = config.weight_bits
    for t in found:
        why = _why_not(t.name, t.module, config)
        if why is None and t.name in tied:
            # a swap would give each user its own copy: the model would be untied and store the table twice
            why = (f"its weight is tied to {', '.join(f'`{o}`' for o in tied[t.name])}; quantizing one user "
                   "would untie them and store the tensor twice, so it stays float")
        if why is None and t.custom_forward and config.weight_bits is None:
            why = (f"{type(t.module).__name__} has its own forward; 16-bit storage keeps the forward of "
                   "standard layers only (the integer modes keep it)")
        if why is None and t.custom_forward and config.mode == "qat":
            why = (f"{type(t.module).__name__} has its own forward, which quantization-aware training does not "
                   "keep; use a PTQ mode (int8-static, int8-dynamic, int4-weight) for it")
        if why is not None:
            skipped.append(Skipped(t.name or "(root)", why))
            continue
        if bits is None:
            plans.append(Plan(t.name, WeightSpec(), "none", t.base, t.custom_forward))
            continue
        # a row that the group size does not divide ends in one shorter group (`affine.group_view`)
        observer = "mse" if config.observer == "mse" else "minmax"
        spec = WeightSpec(bits, config.weight_granularity, config.group_size, config.weight_symmetric, observer)
        act = "none" if t.base is nn.Embedding else config.activations
        plans.append(Plan(t.name, spec, act, t.base, t.custom_forward))
    return plans, skipped


def calibrate_inputs(model: nn.Module, names: list[str], split: Split, *, method: str = "minmax",
                     percentile: float = 99.99, batch_size: int = 32) -> dict[str, tuple[float, int]]:
    """uint8 ``(scale, zero_point)`` of the input of each named module, observed on ``split``."""
    if not names:
        return {}
    observers = {n: RangeObserver(method, percentile) for n in names}
    observe_inputs(model, names, lambda n, x: observers[n].update(x), split, batch_size=batch_size)
    return {n: obs.qparams() for n, obs in observers.items() if obs.seen}


def quantized_module(float_module: nn.Module, plan: Plan, config: Quantize,
                     act_qparams: dict[str, tuple[float, int]],
                     hessian: Tensor | None = None) -> _Quantized | _Half | KeepForward:
    """The quantized (or 16-bit) replacement of one float module; ``float_module`` is not changed. A
    layer with its own forward keeps it (`KeepForward`, integer modes only: see `plan_layers`).
    ``hessian``: the layer's input Hessian ``(K, K)`` (`modelpress.quantization.gptq.input_hessians`) for a
    group-wise Linear under ``method: gptq``; its codes are then GPTQ's instead of rounded to nearest."""
    if config.weight_bits is None:
        dtype = torch.bfloat16 if config.mode == "bf16" else torch.float16
        return HALF_TYPES[plan.base].from_float(float_module, dtype)
    act, s, z = plan.act, 1.0, 0
    if act == "static":
        if plan.name not in act_qparams:
            act = "none"  # never reached by calibration data: nothing to quantize it with
        else:
            s, z = act_qparams[plan.name]
    if hessian is not None and plan.base is nn.Linear and plan.spec.granularity == "group":
        new = _gptq_linear(float_module, plan.spec, hessian)
    else:
        new = QUANT_TYPES[plan.base].from_float(float_module, plan.spec, act=act, act_scale=s, act_zp=z)
    return KeepForward.wrap(float_module, new) if plan.custom_forward else new


def _gptq_linear(module: nn.Module, spec: WeightSpec, hessian: Tensor) -> _Quantized:
    """A weight-only `QuantLinear` whose codes GPTQ chose (scales stored as `from_float` stores them)."""
    scale_dtype = torch.float16 if spec.bits == 4 else torch.float32
    q, scale, zp = gptq_codes(module.weight.detach().float(), hessian, spec.bits, spec.group_size,
                              symmetric=spec.symmetric, observer=spec.observer, scale_dtype=scale_dtype)
    return QUANT_TYPES[nn.Linear](q, scale, zp, spec, op_meta(module), getattr(module, "bias", None),
                                  scale_dtype=str(scale_dtype).removeprefix("torch."))


def swap(model: nn.Module, name: str, new: nn.Module) -> nn.Module:
    """Put ``new`` at ``name`` in ``model``; return the module that was there."""
    old = model.get_submodule(name)
    model.set_submodule(name, new)
    return old
