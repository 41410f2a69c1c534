"""Factored layers that replace ``nn.Linear`` / ``nn.Conv2d``: a chain of smaller standard layers.

Each is a `PackedModule` whose children *are* the factors (ordinary ``nn.Linear`` / ``nn.Conv2d``, or the
swapped modules a later step put in their place, e.g. int8 ``QuantLinear``). ``pack()`` stores no tensors
of its own, only the shapes and conv geometry in ``meta``; ``unpack()`` rebuilds the children at those
shapes (the artifact then loads their values). ``export_module()`` is the chain as an ``nn.Sequential``
of standard modules (what ONNX runs and params / MACs count); ``to_dense()`` multiplies the factors back
into one layer (exact up to float rounding; computed in float64).
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from modelpress.artifact.packed import PackedModule

__all__ = [
    "ChannelFactoredConv2d",
    "FactoredLinear",
    "SpatialFactoredConv2d",
    "child_weight",
    "conv_geometry",
    "dense_conv",
    "unfold_spatial",
]


def _plain(module: nn.Module) -> nn.Module:
    """A child as a standard module (a swapped child, e.g. an int8 QuantConv2d, as its dense form)."""
    return module.to_dense() if isinstance(module, PackedModule) else module


def child_weight(module: nn.Module) -> Tensor:
    """A child's weight as float64 (a swapped child's dense weight)."""
    return _plain(module).weight.detach().double()


def _bias(module: nn.Module) -> Tensor | None:
    b = _plain(module).bias
    return None if b is None else b.detach()


class _Chain(PackedModule):
    """Shared body: children called in ``order``; ``meta`` holds what ``unpack`` needs."""

    order: ClassVar[tuple[str, ...]] = ()

    def __init__(self, meta: dict[str, Any]) -> None:
        super().__init__()
        self.meta = copy.deepcopy(meta)
        for name, child in self.build(self.meta).items():
            self.add_module(name, child)

    @staticmethod
    def build(meta: dict[str, Any]) -> dict[str, nn.Module]:
        """The children, in ``order``, at the shapes ``meta`` records (values are placeholders)."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        for name in self.order:
            x = getattr(self, name)(x)
        return x

    def pack(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        return {}, copy.deepcopy(self.meta)

    @classmethod
    def unpack(cls, tensors: dict[str, Tensor], meta: dict[str, Any]) -> PackedModule:
        return cls(meta)

    def export_module(self) -> nn.Module:
        parts = []
        for name in self.order:
            child = getattr(self, name)
            # plain children are shared, not copied (as the artifact's export view does); swapped children
            # (e.g. int8 factors) give their own deployable form
            parts.append((name, child.export_module() if isinstance(child, PackedModule) else child))
        return nn.Sequential(OrderedDict(parts))

    def extra_repr(self) -> str:
        return f"rank={self.meta['rank']}"


class FactoredLinear(_Chain):
    """``Linear(in → out)`` as ``first: Linear(in → rank, no bias)`` then ``second: Linear(rank → out)``.

    Input ``(..., in_features)``, output ``(..., out_features)``. ``meta``: ``in_features``,
    ``out_features``, ``rank``, ``bias`` (bool).
    """

    order = ("first", "second")

    @staticmethod
    def build(meta: dict[str, Any]) -> dict[str, nn.Module]:
        return {"first": nn.Linear(meta["in_features"], meta["rank"], bias=False),
                "second": nn.Linear(meta["rank"], meta["out_features"], bias=meta["bias"])}  # fmt: skip

    @classmethod
    def from_factors(cls, left: Tensor, right: Tensor, bias: Tensor | None) -> FactoredLinear:
        """``W ≈ left @ right`` with ``left`` ``(out, r)`` and ``right`` ``(r, in)``; ``bias`` ``(out,)`` or None."""
        meta = {"in_features": right.shape[1], "out_features": left.shape[0], "rank": left.shape[1],
                "bias": bias is not None}  # fmt: skip
        m = cls(meta)
        with torch.no_grad():
            m.first.weight.copy_(right)
            m.second.weight.copy_(left)
            if bias is not None:
                m.second.bias.copy_(bias)
        return m.to(left.dtype)

    def to_dense(self) -> nn.Linear:
        w = child_weight(self.second) @ child_weight(self.first)
        b = _bias(self.second)
        dense = nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
        with torch.no_grad():
            dense.weight.copy_(w)
            if b is not None:
                dense.bias.copy_(b)
        return dense.to(_plain(self.first).weight.dtype)

    @classmethod
    def example(cls) -> tuple[FactoredLinear, tuple[Tensor, ...]]:
        """A small instance (12 → 4 → 10, with bias) with seeded random factors, and an input ``(3, 12)``."""
        g = torch.Generator().manual_seed(0)
        m = cls.from_factors(torch.randn(10, 4, generator=g), torch.randn(4, 12, generator=g),
                             torch.randn(10, generator=g))  # fmt: skip
        return m, (torch.randn(3, 12, generator=g),)


def conv_geometry(conv: nn.Conv2d) -> dict[str, Any] | None:
    """The JSON-able geometry of ``conv`` (channels, kernel, stride, explicit int padding, dilation, bias),
    or None when it cannot be factored as a chain: groups > 1, a padding mode other than zeros, or
    ``padding='same'`` with an even kernel (asymmetric padding)."""
    if conv.groups != 1 or conv.padding_mode != "zeros":
        return None
    kh, kw = conv.kernel_size
    if conv.padding == "valid":
        pad = [0, 0]
    elif conv.padding == "same":
        if kh % 2 == 0 or kw % 2 == 0:
            return None
        pad = [conv.dilation[0] * (kh - 1) // 2, conv.dilation[1] * (kw - 1) // 2]
    else:
        pad = [int(p) for p in conv.padding]
    return {"in_channels": conv.in_channels, "out_channels": conv.out_channels, "kernel": [kh, kw],
            "stride": list(conv.stride), "padding": pad, "dilation": list(conv.dilation),
            "bias": conv.bias is not None}  # fmt: skip


def dense_conv(meta: dict[str, Any], weight: Tensor, bias: Tensor | None, dtype: torch.dtype) -> nn.Conv2d:
    """The ``nn.Conv2d`` of geometry ``meta`` with ``weight`` ``(out, in, kh, kw)`` and ``bias``."""
    conv = nn.Conv2d(meta["in_channels"], meta["out_channels"], tuple(meta["kernel"]), tuple(meta["stride"]),
                     tuple(meta["padding"]), tuple(meta["dilation"]), bias=bias is not None)  # fmt: skip
    with torch.no_grad():
        conv.weight.copy_(weight)
        if bias is not None:
            conv.bias.copy_(bias)
    return conv.to(dtype)


class _FactoredConv2d(_Chain):
    """Base of the factored convolutions: ``meta`` holds the dense conv's geometry (`conv_geometry`) plus
    the rank(s); subclasses set ``order``, ``build`` and ``dense_weight``."""

    def dense_weight(self) -> Tensor:
        """The dense kernel ``(out, in, kh, kw)`` in float64."""
        raise NotImplementedError

    def to_dense(self) -> nn.Conv2d:
        last = getattr(self, self.order[-1])
        dtype = _plain(getattr(self, self.order[0])).weight.dtype
        return dense_conv(self.meta, self.dense_weight(), _bias(last), dtype)

    def _load(self, weights: dict[str, Tensor], bias: Tensor | None) -> _FactoredConv2d:
        """Copy ``weights`` (child name → weight) and ``bias`` (of the last child) in; returns self."""
        with torch.no_grad():
            for name, w in weights.items():
                getattr(self, name).weight.copy_(w.reshape(getattr(self, name).weight.shape))
            if bias is not None:
                getattr(self, self.order[-1]).bias.copy_(bias)
        return self.to(next(iter(weights.values())).dtype)


class ChannelFactoredConv2d(_FactoredConv2d):
    """A 1×1 bottleneck: ``first`` k×k conv ``in → rank`` (stride, padding, dilation of the original), then
    ``second`` 1×1 conv ``rank → out`` (the bias). Input ``(n, in, H, W)``, output as the original conv."""

    order = ("first", "second")

    @staticmethod
    def build(meta: dict[str, Any]) -> dict[str, nn.Module]:
        r = meta["rank"]
        return {"first": nn.Conv2d(meta["in_channels"], r, tuple(meta["kernel"]), tuple(meta["stride"]),
                                   tuple(meta["padding"]), tuple(meta["dilation"]), bias=False),
                "second": nn.Conv2d(r, meta["out_channels"], 1, bias=meta["bias"])}  # fmt: skip

    @classmethod
    def from_factors(cls, geometry: dict[str, Any], left: Tensor, right: Tensor,
                     bias: Tensor | None) -> ChannelFactoredConv2d:  # fmt: skip
        """Kernel unfolded to ``(out, in·kh·kw)`` ≈ ``left`` ``(out, r)`` @ ``right`` ``(r, in·kh·kw)``."""
        m = cls({**geometry, "rank": left.shape[1]})
        return m._load({"first": right, "second": left}, bias)

    def dense_weight(self) -> Tensor:
        return torch.einsum("or,rcyx->ocyx", child_weight(self.second)[:, :, 0, 0], child_weight(self.first))

    @classmethod
    def example(cls) -> tuple[ChannelFactoredConv2d, tuple[Tensor, ...]]:
        """A small strided, padded instance (6 → 3 → 8 channels, 3×3) with seeded random factors, and an
        input ``(2, 6, 11, 9)``."""
        g = torch.Generator().manual_seed(0)
        geo = {"in_channels": 6, "out_channels": 8, "kernel": [3, 3], "stride": [2, 1], "padding": [1, 1],
               "dilation": [1, 1], "bias": True}  # fmt: skip
        m = cls.from_factors(geo, torch.randn(8, 3, generator=g), torch.randn(3, 54, generator=g),
                             torch.randn(8, generator=g))  # fmt: skip
        return m, (torch.randn(2, 6, 11, 9, generator=g),)


class SpatialFactoredConv2d(_FactoredConv2d):
    """Jaderberg et al. 2014 (scheme 2): ``vertical`` kh×1 conv ``in → rank`` then ``horizontal`` 1×kw
    conv ``rank → out`` (the bias); stride, padding and dilation are split by axis between the two.
    Input ``(n, in, H, W)``, output as the original conv."""

    order = ("vertical", "horizontal")

    @staticmethod
    def build(meta: dict[str, Any]) -> dict[str, nn.Module]:
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = meta["kernel"], meta["stride"], meta["padding"], meta["dilation"]
        r = meta["rank"]
        return {"vertical": nn.Conv2d(meta["in_channels"], r, (kh, 1), (sh, 1), (ph, 0), (dh, 1), bias=False),
                "horizontal": nn.Conv2d(r, meta["out_channels"], (1, kw), (1, sw), (0, pw), (1, dw),
                                        bias=meta["bias"])}  # fmt: skip

    @classmethod
    def from_factors(cls, geometry: dict[str, Any], left: Tensor, right: Tensor,
                     bias: Tensor | None) -> SpatialFactoredConv2d:  # fmt: skip
        """Kernel ``W[o, c, y, x]`` unfolded to ``M[(c, y), (o, x)]`` ``(in·kh, out·kw)`` ≈ ``left``
        ``(in·kh, r)`` @ ``right`` ``(r, out·kw)``."""
        (kh, kw), cin, cout = geometry["kernel"], geometry["in_channels"], geometry["out_channels"]
        r = left.shape[1]
        m = cls({**geometry, "rank": r})
        vertical = left.reshape(cin, kh, r).permute(2, 0, 1)  # (r, cin, kh)
        horizontal = right.reshape(r, cout, kw).permute(1, 0, 2)  # (cout, r, kw)
        return m._load({"vertical": vertical, "horizontal": horizontal}, bias)

    def dense_weight(self) -> Tensor:
        v = child_weight(self.vertical)[:, :, :, 0]  # (r, in, kh)
        h = child_weight(self.horizontal)[:, :, 0, :]  # (out, r, kw)
        return torch.einsum("rcy,orx->ocyx", v, h)

    @classmethod
    def example(cls) -> tuple[SpatialFactoredConv2d, tuple[Tensor, ...]]:
        """A small strided, dilated instance (5 → 4 → 7 channels, 3×3) with seeded random factors, and an
        input ``(2, 5, 11, 9)``."""
        g = torch.Generator().manual_seed(0)
        geo = {"in_channels": 5, "out_channels": 7, "kernel": [3, 3], "stride": [2, 1], "padding": [2, 1],
               "dilation": [2, 1], "bias": True}  # fmt: skip
        m = cls.from_factors(geo, torch.randn(15, 4, generator=g), torch.randn(4, 21, generator=g),
                             torch.randn(7, generator=g))  # fmt: skip
        return m, (torch.randn(2, 5, 11, 9, generator=g),)


def unfold_spatial(weight: Tensor) -> Tensor:
    """Kernel ``(out, in, kh, kw)`` as the matrix ``M[(c, y), (o, x)]`` of shape ``(in·kh, out·kw)``."""
    o, c, kh, kw = weight.shape
    return weight.permute(1, 2, 0, 3).reshape(c * kh, o * kw)

