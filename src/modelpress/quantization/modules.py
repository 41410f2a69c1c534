"""Quantized and 16-bit modules that replace ``nn.Linear`` / ``nn.Conv2d`` / ``nn.Embedding``.

`QuantLinear`, `QuantConv2d`, `QuantEmbedding` hold signed integer weight codes (int8 in memory; stored
int8, or int4 two per byte) with float scales and, when asymmetric, zero points. Their forward is the
PyTorch *simulation* of the deployed integer model: dequantize the weight, fake-quantize the input
(``static``: calibrated uint8 range; ``dynamic``: per-call uint8 range over the whole tensor, as
onnxruntime's DynamicQuantizeLinear does), then the float op. The dequantized weight is kept as a
non-persistent buffer, so the simulation runs at fp32 speed and ``pack()`` stores only the codes.

During ONNX export the activation fake-quantization is left out: the exported graph is the plain float
graph with on-grid weights, which :mod:`modelpress.quantization.deploy` rewrites into onnxruntime's
integer form (and there the activations are quantized for real).

`HalfLinear`, `HalfConv2d`, `HalfEmbedding` store weights in float16 / bfloat16 and compute in float32:
16-bit compute is 5–8× slower than fp32 on this CPU (DESIGN §8b), so 16 bits is a storage format here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from modelpress.artifact.packed import PackedModule
from modelpress.artifact.packing import int4_pack, int4_unpack
from modelpress.quantization.affine import (
    dequantize_weight,
    fake_quantize,
    qparams_from_range,
    quantize_weight,
    weight_qparams,
)
from modelpress.quantization.observers import ACT_BITS

__all__ = [
    "HALF_TYPES",
    "QUANT_TYPES",
    "HalfConv2d",
    "HalfEmbedding",
    "HalfLinear",
    "QuantConv2d",
    "QuantEmbedding",
    "QuantLinear",
    "WeightSpec",
    "exporting",
    "op_meta",
]


@dataclass(frozen=True)
class WeightSpec:
    """How one layer's weight is quantized (see `Quantize` for the meaning of each field)."""

    bits: int = 8
    granularity: str = "channel"
    group_size: int = 32
    symmetric: bool = True
    observer: str = "minmax"


def exporting() -> bool:
    """True while torch.export / torch.onnx trace the model (the deployed graph quantizes for real)."""
    return bool(torch.compiler.is_exporting() or torch.onnx.is_in_onnx_export())


def op_meta(module: nn.Module) -> dict[str, Any]:
    """The JSON-able hyper-parameters of a Linear / Conv2d / Embedding needed to rebuild its op."""
    if isinstance(module, nn.Linear):
        return {"kind": "linear"}
    if isinstance(module, nn.Conv2d):
        return {"kind": "conv2d", "stride": list(module.stride), "padding": list(module.padding)
                if not isinstance(module.padding, str) else module.padding,
                "dilation": list(module.dilation), "groups": module.groups}
    if isinstance(module, nn.Embedding):
        return {"kind": "embedding", "padding_idx": module.padding_idx}
    raise TypeError(f"no quantized form for {type(module).__name__}")


def _run_op(meta: dict[str, Any], x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    kind = meta["kind"]
    if kind == "linear":
        return F.linear(x, weight, bias)
    if kind == "conv2d":
        pad = meta["padding"] if isinstance(meta["padding"], str) else tuple(meta["padding"])
        return F.conv2d(x, weight, bias, tuple(meta["stride"]), pad, tuple(meta["dilation"]), meta["groups"])
    return F.embedding(x, weight, meta["padding_idx"])


def _to_dense(meta: dict[str, Any], weight: Tensor, bias: Tensor | None) -> nn.Module:
    kind = meta["kind"]
    if kind == "linear":
        m: nn.Module = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    elif kind == "conv2d":
        pad = meta["padding"] if isinstance(meta["padding"], str) else tuple(meta["padding"])
        m = nn.Conv2d(weight.shape[1] * meta["groups"], weight.shape[0], tuple(weight.shape[2:]),
                      stride=tuple(meta["stride"]), padding=pad, dilation=tuple(meta["dilation"]),
                      groups=meta["groups"], bias=bias is not None)
    else:
        m = nn.Embedding(weight.shape[0], weight.shape[1], padding_idx=meta["padding_idx"])
    with torch.no_grad():
        m.weight.copy_(weight)
        if bias is not None:
            m.bias.copy_(bias)
    return m


def _float_example(accepts: type[nn.Module]) -> tuple[nn.Module, tuple[Tensor, ...]]:
    """A small seeded float layer of type ``accepts`` and inputs for it (for the swaps' `example()`)."""
    g = torch.Generator().manual_seed(0)
    if accepts is nn.Conv2d:
        m: nn.Module = nn.Conv2d(3, 4, 3, padding=1)
        x = torch.randn(2, 3, 6, 6, generator=g)
    elif accepts is nn.Embedding:
        m, x = nn.Embedding(10, 8), torch.randint(0, 10, (2, 5), generator=g)
    else:
        m, x = nn.Linear(8, 4), torch.randn(2, 8, generator=g)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return m, (x,)


class _Quantized(PackedModule):
    """Shared body of the integer-weight modules; subclasses differ only in the op they accept."""

    accepts: type[nn.Module] = nn.Module

    def __init__(self, qweight: Tensor, scale: Tensor, zero_point: Tensor, spec: WeightSpec,
                 meta: dict[str, Any], bias: Tensor | None = None, *, act: str = "none",
                 act_scale: float = 1.0, act_zp: int = 0, scale_dtype: str = "float32") -> None:
        super().__init__()
        self.spec = spec
        self.meta = dict(meta)
        self.act = act
        self.act_scale = float(act_scale)
        self.act_zp = int(act_zp)
        self.scale_dtype = scale_dtype
        self.register_buffer("qweight", qweight.to(torch.int8))
        self.register_buffer("scale", scale.to(torch.float32))
        self.register_buffer("zero_point", zero_point.to(torch.int32))
        self.bias = nn.Parameter(bias.detach().clone().float()) if bias is not None else None
        w = dequantize_weight(self.qweight, self.scale, self.zero_point, spec.granularity, spec.group_size)
        self.register_buffer("weight", w, persistent=False)

    @classmethod
    def from_float(cls, module: nn.Module, spec: WeightSpec, *, act: str = "none", act_scale: float = 1.0,
                   act_zp: int = 0, weight: Tensor | None = None,
                   scale: Tensor | None = None) -> _Quantized:
        """Quantize ``module`` (a Linear / Conv2d / Embedding). ``weight`` / ``scale`` override the
        module's weight and the observed scale (QAT passes its folded weight and learned scale)."""
        w = (module.weight if weight is None else weight).detach().float()
        scale_dtype = torch.float16 if spec.bits == 4 else torch.float32
        s, z = weight_qparams(w, spec.bits, spec.granularity, spec.group_size, symmetric=spec.symmetric,
                              observer=spec.observer, scale_dtype=scale_dtype)
        if scale is not None:
            s = scale.detach().float().reshape(s.shape).to(scale_dtype).float()
        q = quantize_weight(w, s, z, spec.bits, spec.granularity, spec.group_size)
        bias = getattr(module, "bias", None)
        return cls(q, s, z, spec, op_meta(module), bias, act=act, act_scale=act_scale, act_zp=act_zp,
                   scale_dtype=str(scale_dtype).removeprefix("torch."))

    @classmethod
    def example(cls) -> tuple[_Quantized, tuple[Tensor, ...]]:
        """int8 per-channel weights of a small seeded layer (weight-only, so export agrees exactly)."""
        m, x = _float_example(cls.accepts)
        return cls.from_float(m, WeightSpec()), x

    def _quantize_input(self, x: Tensor) -> Tensor:
        if self.act == "none" or exporting():
            return x
        qmax = (1 << ACT_BITS) - 1
        if self.act == "static":
            s = torch.tensor(self.act_scale, dtype=x.dtype)
            return fake_quantize(x, s, torch.tensor(self.act_zp), 0, qmax)
        # dynamic: one range over the whole input tensor, like onnxruntime's DynamicQuantizeLinear
        s, z = qparams_from_range(x.detach().min(), x.detach().max(), ACT_BITS, symmetric=False, signed=False)
        return fake_quantize(x, s, z, 0, qmax)

    def forward(self, x: Tensor) -> Tensor:
        return _run_op(self.meta, self._quantize_input(x), self.weight, self.bias)

    def to_dense(self) -> nn.Module:
        return _to_dense(self.meta, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (f"{self.meta['kind']}, shape={list(self.qweight.shape)}, bits={self.spec.bits}, "
                f"granularity={self.spec.granularity}, act={self.act}")

    # ---- artifact ---------------------------------------------------------------------------------

    def pack(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """int8 codes as int8, 4-bit codes two per byte; scales in ``scale_dtype``; zero points only
        when asymmetric; the bias in float32."""
        t: dict[str, Tensor] = {}
        if self.spec.bits == 4:
            t["qweight"] = int4_pack(self.qweight)
        else:
            t["qweight"] = self.qweight.clone()
        t["scale"] = self.scale.to(getattr(torch, self.scale_dtype)).clone()
        if not self.spec.symmetric:
            zp = self.zero_point.to(torch.int8)
            t["zero_point"] = int4_pack(zp) if self.spec.bits == 4 else zp.clone()
        if self.bias is not None:
            t["bias"] = self.bias.detach().clone()
        meta = {"op": self.meta, "spec": self.spec.__dict__.copy(), "weight_shape": list(self.qweight.shape),
                "scale_shape": list(self.scale.shape), "act": self.act, "act_scale": self.act_scale,
                "act_zp": self.act_zp, "scale_dtype": self.scale_dtype}
        return t, meta

    @classmethod
    def unpack(cls, tensors: dict[str, Tensor], meta: dict[str, Any]) -> _Quantized:
        spec = WeightSpec(**meta["spec"])
        shape = [int(s) for s in meta["weight_shape"]]
        sshape = [int(s) for s in meta["scale_shape"]]
        n = 1
        for s in shape:
            n *= s
        if spec.bits == 4:
            q = int4_unpack(tensors["qweight"], n).reshape(shape)
        else:
            q = tensors["qweight"].reshape(shape)
        scale = tensors["scale"].float().reshape(sshape)
        if "zero_point" in tensors:
            zpt = tensors["zero_point"]
            zp = (int4_unpack(zpt, scale.numel()) if spec.bits == 4 else zpt).reshape(sshape)
        else:
            zp = torch.zeros(sshape, dtype=torch.int32)
        return cls(q, scale, zp.to(torch.int32), spec, meta["op"], tensors.get("bias"), act=meta["act"],
                   act_scale=meta["act_scale"], act_zp=meta["act_zp"], scale_dtype=meta["scale_dtype"])


class QuantLinear(_Quantized):
    """``nn.Linear`` with integer weight codes (weight ``(out, in)``; input ``(..., in)``)."""

    accepts = nn.Linear


class QuantConv2d(_Quantized):
    """``nn.Conv2d`` with integer weight codes, per output channel / group / tensor scales."""

    accepts = nn.Conv2d


class QuantEmbedding(_Quantized):
    """``nn.Embedding`` with integer codes per row (``channel``) or per group of a row."""

    accepts = nn.Embedding


class _Half(PackedModule):
    """Weights stored in float16 / bfloat16; computed in float32 (faster than 16-bit compute here)."""

    accepts: type[nn.Module] = nn.Module

    def __init__(self, weight16: Tensor, meta: dict[str, Any], bias: Tensor | None = None) -> None:
        super().__init__()
        self.meta = dict(meta)
        self.register_buffer("weight16", weight16.detach().clone())
        self.bias = nn.Parameter(bias.detach().clone().float()) if bias is not None else None
        self.register_buffer("weight", self.weight16.float(), persistent=False)

    @classmethod
    def from_float(cls, module: nn.Module, dtype: torch.dtype = torch.float16) -> _Half:
        return cls(module.weight.detach().to(dtype), op_meta(module), getattr(module, "bias", None))

    @classmethod
    def example(cls) -> tuple[_Half, tuple[Tensor, ...]]:
        """float16 weights of a small seeded layer."""
        m, x = _float_example(cls.accepts)
        return cls.from_float(m), x

    def forward(self, x: Tensor) -> Tensor:
        return _run_op(self.meta, x, self.weight, self.bias)

    def to_dense(self) -> nn.Module:
        return _to_dense(self.meta, self.weight, self.bias)

    def pack(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        t = {"weight16": self.weight16.clone()}
        if self.bias is not None:
            t["bias"] = self.bias.detach().clone()
        return t, {"op": self.meta}

    @classmethod
    def unpack(cls, tensors: dict[str, Tensor], meta: dict[str, Any]) -> _Half:
        return cls(tensors["weight16"], meta["op"], tensors.get("bias"))


class HalfLinear(_Half):
    """``nn.Linear`` with 16-bit stored weights."""

    accepts = nn.Linear


class HalfConv2d(_Half):
    """``nn.Conv2d`` with 16-bit stored weights."""

    accepts = nn.Conv2d


class HalfEmbedding(_Half):
    """``nn.Embedding`` with 16-bit stored weights."""

    accepts = nn.Embedding


# float layer type -> its quantized / 16-bit replacement, from each class's `accepts`
QUANT_TYPES: dict[type[nn.Module], type[_Quantized]] = {c.accepts: c for c in (QuantLinear, QuantConv2d, QuantEmbedding)}
HALF_TYPES: dict[type[nn.Module], type[_Half]] = {c.accepts: c for c in (HalfLinear, HalfConv2d, HalfEmbedding)}
