"""Quantization-aware training: fake-quantized layers trained with a straight-through estimator.

`FakeQuantLayer` wraps a float Linear / Conv2d / Embedding. In its forward the weight is fake-quantized
per output channel (or group) — with ranges observed from the current weight every step, or with step
sizes learned by LSQ (Esser et al. 2020) — and, for int8, the input is fake-quantized to uint8 with a
range that is a moving average of observed batch min / max (or learned). Rounding passes gradients
straight through (``affine.fake_quantize``). BatchNorm is folded into the convs *before* training
(`fold.fold_batchnorm`), so the weights being quantized are the ones that will be deployed.
After training, :meth:`FakeQuantLayer.convert` gives the same `QuantLinear` / `QuantConv2d` as PTQ.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from modelpress.quantization.affine import (
    fake_quantize,
    group_view,
    qparams_from_range,
    qrange,
    ungroup,
    weight_qparams,
)
from modelpress.quantization.modules import QUANT_TYPES, WeightSpec, _Quantized, _run_op, op_meta
from modelpress.quantization.observers import ACT_BITS

__all__ = ["EMA_MOMENTUM", "FakeQuantLayer"]

# Weight of a new batch in the moving min / max of activations (as in TensorFlow's QAT).
EMA_MOMENTUM = 0.01


def _grad_scale(x: Tensor, g: float) -> Tensor:
    """Identity in the forward pass; multiplies the gradient by ``g`` (LSQ's step-size gradient scale)."""
    return (x - x * g).detach() + x * g


class FakeQuantLayer(nn.Module):
    """A float layer trained under fake quantization; ``inner`` keeps the float weight and bias.

    ``act``: ``none`` or ``static`` (uint8 inputs); ``act_init``: the calibrated ``(scale, zero_point)``
    of the input, which starts the moving range; ``learn``: learn step sizes instead of observing.
    """

    def __init__(self, inner: nn.Module, spec: WeightSpec, *, act: str = "none",
                 act_init: tuple[float, int] | None = None, learn: bool = False) -> None:
        super().__init__()
        self.inner = inner
        self.spec = spec
        self.meta = op_meta(inner)
        self.act = act if act_init is not None else "none"
        self.learn = learn
        if learn:
            s, _ = weight_qparams(inner.weight, spec.bits, spec.granularity, spec.group_size, symmetric=True)
            self.w_scale = nn.Parameter(s.clone())
        if self.act == "static":
            s0, z0 = act_init  # type: ignore[misc]
            qmin, qmax = qrange(ACT_BITS, False)
            self.register_buffer("act_lo", torch.tensor((qmin - z0) * s0))
            self.register_buffer("act_hi", torch.tensor((qmax - z0) * s0))
            if learn:
                self.a_scale = nn.Parameter(torch.tensor(float(s0)))
                self.register_buffer("a_zp", torch.tensor(int(z0)))

    # ---- the pieces of forward ----------------------------------------------------------------------

    def _act_qparams(self) -> tuple[Tensor, Tensor]:
        if self.learn:
            return self.a_scale.abs().clamp_min(1e-8), self.a_zp
        return qparams_from_range(self.act_lo, self.act_hi, ACT_BITS, symmetric=False, signed=False)

    def _fake_input(self, x: Tensor) -> Tensor:
        if self.act != "static":
            return x
        if self.training and not self.learn:
            with torch.no_grad():
                self.act_lo.lerp_(x.detach().min().float(), EMA_MOMENTUM)
                self.act_hi.lerp_(x.detach().max().float(), EMA_MOMENTUM)
        s, z = self._act_qparams()
        if self.learn:
            s = _grad_scale(s, 1.0 / math.sqrt(x.numel() * 255))
        return fake_quantize(x, s, z, 0, (1 << ACT_BITS) - 1)

    def _weight_scale(self) -> tuple[Tensor, Tensor]:
        if self.learn:
            s = self.w_scale.abs().clamp_min(1e-8)
            return s, torch.zeros_like(s, dtype=torch.int32)
        return weight_qparams(self.inner.weight.detach(), self.spec.bits, self.spec.granularity,
                              self.spec.group_size, symmetric=self.spec.symmetric)

    def fake_weight(self) -> Tensor:
        """The weight as the quantized model will see it (float, differentiable by STE)."""
        w = self.inner.weight
        view = group_view(w, self.spec.granularity, self.spec.group_size)
        s, z = self._weight_scale()
        if self.learn:
            s = _grad_scale(s, 1.0 / math.sqrt(view.shape[-1] * qrange(self.spec.bits, True)[1]))
        qmin, qmax = qrange(self.spec.bits, True)
        return ungroup(fake_quantize(view, s, z, qmin, qmax), w.shape)

    def forward(self, x: Tensor) -> Tensor:
        return _run_op(self.meta, self._fake_input(x), self.fake_weight(), getattr(self.inner, "bias", None))

    def convert(self) -> _Quantized:
        """The deployable quantized module: same codes as this layer's forward in eval mode."""
        act, s, z = "none", 1.0, 0
        if self.act == "static":
            sc, zp = self._act_qparams()
            act, s, z = "static", float(sc.detach()), int(zp)
        scale = self._weight_scale()[0].detach() if self.learn else None
        spec = self.spec if not self.learn else WeightSpec(self.spec.bits, self.spec.granularity,
                                                           self.spec.group_size, True, "minmax")
        cls = next(q for t, q in QUANT_TYPES.items() if isinstance(self.inner, t))  # subclasses too
        return cls.from_float(self.inner, spec, act=act, act_scale=s, act_zp=z, scale=scale)
