"""Quantizing a layer whose class has its own ``forward`` (a Conv2d subclass that pads TF-"SAME" style).

Swapping such a layer for `QuantConv2d` would drop what its forward adds (the padding). `KeepForward`
instead keeps the layer and calls *its* forward, with its weight replaced by the dequantized codes of a
`QuantConv2d` / `QuantLinear` / `QuantEmbedding` (or a 16-bit module) held beside it:

- ``inner``: the user's layer with its ``weight`` parameter removed (its bias and other state stay);
- ``quant``: the quantized module that owns the integer codes (itself a swap, so the artifact stores
  the codes, nested); its bias is dropped, since ``inner`` applies its own.

The input is fake-quantized before ``inner`` runs (as `QuantConv2d` does); zero padding inside ``inner``
commutes with that (0 is on every uint8 activation grid, which always spans 0). Exported to ONNX, the
graph is ``inner``'s own ops with on-grid float weights (Pad + Conv for the example above), which the
deploy step turns into integer ops like any other quantized conv.
"""

from __future__ import annotations

import copy
import importlib
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from modelpress.artifact.bake import unparametrize
from modelpress.artifact.packed import PackedModule
from modelpress.errors import BadInputError
from modelpress.quantization.modules import _Half, _Quantized

__all__ = ["KeepForward"]

# Attributes of torch layers that `unpack` may restore (JSON-able hyper-parameters, no code).
_PLAIN = (int, float, str, bool, type(None))


def _plain_attrs(module: nn.Module) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in vars(module).items():
        if k.startswith("_") and k != "_reversed_padding_repeated_twice":
            continue
        if isinstance(v, _PLAIN) or (isinstance(v, (tuple, list)) and all(isinstance(x, _PLAIN) for x in v)):
            out[k] = list(v) if isinstance(v, tuple) else v
    return out


class KeepForward(PackedModule):
    """A layer with its own forward, run with quantized weights (see the module docstring).

    Input and output shapes are those of ``inner`` (e.g. ``(N, C, H, W) -> (N, C', H', W')``).
    """

    def __init__(self, inner: nn.Module, quant: _Quantized | _Half) -> None:
        super().__init__()
        if "weight" in inner._parameters:
            del inner._parameters["weight"]
        self.inner = inner
        self.quant = quant
        self._lend_weight()

    @classmethod
    def wrap(cls, module: nn.Module, quant: _Quantized | _Half) -> KeepForward:
        """Wrap a copy of ``module`` (never changed itself) around ``quant``, its quantized form."""
        inner = copy.deepcopy(module)
        if parametrize.is_parametrized(inner, "weight"):
            unparametrize(inner, "weight")  # a pruning mask: the codes already hold its zeros
        quant.bias = None
        return cls(inner, quant)

    def _lend_weight(self) -> None:
        # a plain attribute (not a parameter or buffer): not in the state dict, so stored once, as codes
        object.__setattr__(self.inner, "weight", self.quant.weight)

    def forward(self, x: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        self._lend_weight()  # again each call: `.to()` moves quant's buffer, not the attribute
        if isinstance(self.quant, _Quantized):
            x = self.quant._quantize_input(x)
        return self.inner(x, *args, **kwargs)

    def to_dense(self) -> nn.Module:
        """A copy of ``inner`` with its weight as a float parameter (the on-grid values)."""
        dense = copy.deepcopy(self.inner)
        object.__delattr__(dense, "weight")
        dense.weight = nn.Parameter(self.quant.weight.detach().clone())
        return dense

    def export_module(self) -> nn.Module:
        return self.to_dense()

    def extra_repr(self) -> str:
        return f"keeps the forward of {type(self.inner).__name__}"

    # ---- artifact ---------------------------------------------------------------------------------

    def pack(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """No tensors of its own (``quant`` is stored as its own nested swap, ``inner``'s bias as a plain
        entry); meta: ``inner``'s class, its JSON-able hyper-parameters and its bias shape."""
        cls = type(self.inner)
        bias = getattr(self.inner, "bias", None)
        q = self.quant
        return {}, {"inner_class": f"{cls.__module__}:{cls.__qualname__}", "inner_attrs": _plain_attrs(self.inner),
                    "bias_shape": list(bias.shape) if isinstance(bias, Tensor) else None,
                    "quant_class": type(q).__name__, "quant_meta": q.pack()[1]}

    @classmethod
    def unpack(cls, tensors: dict[str, Tensor], meta: dict[str, Any]) -> KeepForward:
        """Rebuild ``inner`` at its stored shapes — only classes of torch or modelpress: an artifact never
        imports a user's code by itself — and a placeholder ``quant`` that the loader replaces with the
        nested swap stored under ``.quant``. Raises BadInputError for any other class."""
        ref = str(meta.get("inner_class", ""))
        module_name, _, qual = ref.partition(":")
        if not (module_name.startswith(("torch.nn.", "modelpress.")) and qual and "." not in qual):
            raise BadInputError(f"the artifact keeps the forward of layer class {ref!r}, which it cannot rebuild "
                                "without running that class's code. Fix: load the model with its own code and "
                                "quantize it again, or build the layer from torch.nn classes only.")
        inner_cls = getattr(importlib.import_module(module_name), qual)
        inner = inner_cls.__new__(inner_cls)
        nn.Module.__init__(inner)
        for k, v in meta["inner_attrs"].items():
            object.__setattr__(inner, k, tuple(v) if isinstance(v, list) else v)
        shape = meta.get("bias_shape")
        inner.bias = nn.Parameter(torch.zeros(shape)) if shape is not None else None
        from modelpress.quantization import modules as qm

        qmeta = meta["quant_meta"]
        return cls(inner, getattr(qm, meta["quant_class"]).unpack(_placeholder(qmeta), qmeta))


def _placeholder(qmeta: dict[str, Any]) -> dict[str, Tensor]:
    """Tensors of the stored shapes for ``quant``'s unpack; its values come from its own swap entry."""
    if "weight_shape" not in qmeta:
        raise BadInputError("a 16-bit layer that keeps its own forward cannot be rebuilt from an artifact yet.")
    n = 1
    for s in qmeta["weight_shape"]:
        n *= int(s)
    q = torch.zeros((n + 1) // 2, dtype=torch.uint8) if qmeta["spec"]["bits"] == 4 else torch.zeros(n, dtype=torch.int8)
    return {"qweight": q, "scale": torch.ones(qmeta["scale_shape"])}
