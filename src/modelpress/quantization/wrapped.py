"""Quantizing a layer whose class has its own ``forward`` (a Conv2d subclass that pads TF-"SAME" style).

Swapping such a layer for `QuantConv2d` would drop what its forward adds (the padding). `KeepForward`
instead keeps the layer (``inner``, without its ``weight`` parameter) and calls *its* forward with the
weight replaced by the dequantized integer codes, which `KeepForward` holds itself exactly as
`QuantConv2d` / `QuantLinear` do (it is one of them: codes, scales, zero points, the calibrated input
range, and the same ``pack`` encoding). ``inner`` keeps its bias and everything else of its own.

The input is fake-quantized before ``inner`` runs; zero padding inside ``inner`` commutes with that (0 is
on every uint8 activation grid, which always spans 0). Exported, the graph is ``inner``'s own ops with
on-grid float weights (Pad + Conv for the example above); the deploy step finds the weights by value, as
for any quantized layer, and emits integer ops.
"""

from __future__ import annotations

import copy
import importlib
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from modelpress.artifact.baking import unparametrize
from modelpress.artifact.packed import PackedModule
from modelpress.errors import BadInputError
from modelpress.quantization.modules import QuantLinear, WeightSpec, _Quantized

__all__ = ["KeepForward"]

# Attribute values of a layer that `pack` records and `unpack` restores: JSON-able hyper-parameters only.
_PLAIN = (int, float, str, bool, type(None))


def _plain_attrs(module: nn.Module) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in vars(module).items():
        if k.startswith("_") and k != "_reversed_padding_repeated_twice":
            continue
        if isinstance(v, _PLAIN) or (isinstance(v, (tuple, list)) and all(isinstance(x, _PLAIN) for x in v)):
            out[k] = list(v) if isinstance(v, tuple) else v
    return out


def _rebuild_inner(meta: dict[str, Any]) -> nn.Module:
    """The layer of class ``meta["inner_class"]`` with its recorded attributes and a bias of the stored
    shape (values are loaded afterwards). Only torch.nn and modelpress classes: an artifact never imports
    a user's code by itself. Raises BadInputError for any other class."""
    if meta.get("inner_is_swap"):
        return nn.Module()  # a swap itself: the loader puts the rebuilt one here (stored under `.inner`)
    ref = str(meta.get("inner_class", ""))
    module_name, _, qual = ref.partition(":")
    if not (module_name.startswith(("torch.nn.", "modelpress.")) and qual and "." not in qual):
        raise BadInputError(f"the artifact keeps the forward of layer class {ref!r}, which it cannot rebuild "
                            "without running that class's code. Fix: load the model with its own code and "
                            "quantize it again, or build the layer from torch.nn classes only.")
    inner_cls = getattr(importlib.import_module(module_name), qual, None)
    if not (isinstance(inner_cls, type) and issubclass(inner_cls, nn.Module)):
        raise BadInputError(f"the artifact names layer class {ref!r}, which is not an nn.Module class.")
    inner = inner_cls.__new__(inner_cls)
    nn.Module.__init__(inner)
    for k, v in meta["inner_attrs"].items():
        object.__setattr__(inner, k, tuple(v) if isinstance(v, list) else v)
    shape = meta.get("bias_shape")
    inner.bias = nn.Parameter(torch.zeros(shape)) if shape is not None else None
    return inner


class KeepForward(_Quantized):
    """A layer with its own forward, run with integer-coded weights (see the module docstring).

    Input and output shapes are those of ``inner`` (e.g. ``(N, C, H, W) -> (N, C', H', W')``).
    """

    # the layer inside is part of this swap (its weight is these codes): no later step may swap it
    sealed = True

    def __init__(self, qweight: Tensor, scale: Tensor, zero_point: Tensor, spec: WeightSpec,
                 meta: dict[str, Any], inner: nn.Module, *, act: str = "none", act_scale: float = 1.0,
                 act_zp: int = 0, scale_dtype: str = "float32") -> None:
        super().__init__(qweight, scale, zero_point, spec, meta, None, act=act, act_scale=act_scale,
                         act_zp=act_zp, scale_dtype=scale_dtype)
        inner._parameters.pop("weight", None)
        self.inner = inner
        self._lend_weight()

    @classmethod
    def wrap(cls, module: nn.Module, quant: _Quantized) -> KeepForward:
        """Keep a copy of ``module`` (never changed itself) and take the codes of ``quant``, its
        quantized form (from `QuantConv2d.from_float` etc.)."""
        inner = copy.deepcopy(module)
        if parametrize.is_parametrized(inner, "weight"):
            unparametrize(inner, "weight")  # a pruning mask: the codes already hold its zeros
        return cls(quant.qweight, quant.scale, quant.zero_point, quant.spec, quant.meta, inner, act=quant.act,
                   act_scale=quant.act_scale, act_zp=quant.act_zp, scale_dtype=quant.scale_dtype)

    @classmethod
    def example(cls) -> tuple[KeepForward, tuple[Tensor, ...]]:
        """int8 codes of a small seeded conv (weight-only, so the export form agrees exactly)."""
        g = torch.Generator().manual_seed(0)
        conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        with torch.no_grad():
            for p in conv.parameters():
                p.copy_(torch.randn(p.shape, generator=g))
        from modelpress.quantization.modules import QuantConv2d

        return cls.wrap(conv, QuantConv2d.from_float(conv, WeightSpec())), (torch.randn(2, 3, 7, 7, generator=g),)

    def _lend_weight(self) -> None:
        # a plain attribute (not a parameter or buffer): outside the state dict, so stored once, as codes
        object.__setattr__(self.inner, "weight", self.weight)

    def forward(self, x: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        self._lend_weight()  # each call: `.to()` or a load may have replaced the buffer
        return self.inner(self._quantize_input(x), *args, **kwargs)

    def to_dense(self) -> nn.Module:
        """A copy of ``inner`` with its weight as a float parameter (the on-grid values)."""
        dense = copy.deepcopy(self.inner)
        dense.__dict__.pop("weight", None)
        dense.weight = nn.Parameter(self.weight.detach().clone())
        return dense

    def extra_repr(self) -> str:
        return f"keeps the forward of {type(self.inner).__name__}; " + super().extra_repr()

    def pack(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """The codes as `QuantConv2d.pack` stores them; meta adds ``inner``'s class, its JSON-able
        hyper-parameters and its bias shape (``inner``'s tensors are plain state entries)."""
        tensors, meta = super().pack()
        cls = type(self.inner)
        bias = getattr(self.inner, "bias", None)
        meta |= {"inner_class": f"{cls.__module__}:{cls.__qualname__}", "inner_attrs": _plain_attrs(self.inner),
                 "bias_shape": list(bias.shape) if isinstance(bias, Tensor) else None,
                 "inner_is_swap": isinstance(self.inner, PackedModule)}
        return tensors, meta

    @classmethod
    def unpack(cls, tensors: dict[str, Tensor], meta: dict[str, Any]) -> KeepForward:
        """Rebuild from `pack`'s output; ``inner`` at its stored shapes (see `_rebuild_inner`)."""
        codes = QuantLinear.unpack(tensors, meta)  # the decoding is the same for every _Quantized
        return cls(codes.qweight, codes.scale, codes.zero_point, codes.spec, codes.meta, _rebuild_inner(meta),
                   act=codes.act, act_scale=codes.act_scale, act_zp=codes.act_zp, scale_dtype=codes.scale_dtype)
