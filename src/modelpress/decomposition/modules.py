"""Decomposed convolutions: Tucker-2 (1×1 → k×k core → 1×1) and CP (1×1 → k×1 depthwise → 1×k depthwise → 1×1).

Both follow the swap protocol like the factored layers of `modelpress.lowrank.modules` (whose base they
share): the children are the factors as standard convs, ``pack()`` stores only shapes and geometry,
``export_module()`` is the chain, ``to_dense()`` the kernel multiplied back.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from modelpress.decomposition.tensors import CP, Tucker2
from modelpress.lowrank.modules import _FactoredConv2d, child_weight

__all__ = ["CPConv2d", "TuckerConv2d"]

_EXAMPLE_GEOMETRY = {"in_channels": 6, "out_channels": 8, "kernel": [3, 3], "stride": [2, 1], "padding": [1, 2],
                     "dilation": [1, 2], "bias": True}  # fmt: skip


def _example_input(g: torch.Generator) -> tuple[Tensor, ...]:
    return (torch.randn(2, 6, 12, 10, generator=g),)


class TuckerConv2d(_FactoredConv2d):
    """Kim et al. 2016: ``first`` 1×1 conv ``in → r_in``, ``core`` kh×kw conv ``r_in → r_out`` (the stride,
    padding and dilation of the original), ``last`` 1×1 conv ``r_out → out`` (the bias).
    ``meta["rank"]`` is ``[r_out, r_in]``. Input ``(n, in, H, W)``, output as the original conv."""

    order = ("first", "core", "last")

    @staticmethod
    def build(meta: dict[str, Any]) -> dict[str, nn.Module]:
        r_out, r_in = meta["rank"]
        return {"first": nn.Conv2d(meta["in_channels"], r_in, 1, bias=False),
                "core": nn.Conv2d(r_in, r_out, tuple(meta["kernel"]), tuple(meta["stride"]), tuple(meta["padding"]),
                                  tuple(meta["dilation"]), bias=False),
                "last": nn.Conv2d(r_out, meta["out_channels"], 1, bias=meta["bias"])}  # fmt: skip

    @classmethod
    def from_factors(cls, geometry: dict[str, Any], t: Tucker2, bias: Tensor | None) -> TuckerConv2d:
        """The module computing the conv of kernel ``t.dense()`` with geometry ``geometry``."""
        m = cls({**geometry, "rank": [t.core.shape[0], t.core.shape[1]]})
        return m._load({"first": t.in_factor.T, "core": t.core, "last": t.out_factor}, bias)

    def dense_weight(self) -> Tensor:
        return torch.einsum("ob,bayx,ac->ocyx", child_weight(self.last)[:, :, 0, 0], child_weight(self.core),
                            child_weight(self.first)[:, :, 0, 0])  # fmt: skip

    @classmethod
    def example(cls) -> tuple[TuckerConv2d, tuple[Tensor, ...]]:
        """A small strided, dilated instance (6 → [4, 3] → 8 channels, 3×3) with seeded random factors, and
        an input ``(2, 6, 12, 10)``."""
        g = torch.Generator().manual_seed(0)
        t = Tucker2(torch.randn(4, 3, 3, 3, generator=g), torch.randn(8, 4, generator=g), torch.randn(6, 3, generator=g))
        return cls.from_factors(_EXAMPLE_GEOMETRY, t, torch.randn(8, generator=g)), _example_input(g)


class CPConv2d(_FactoredConv2d):
    """Lebedev et al. 2015: ``first`` 1×1 conv ``in → R``, ``vertical`` kh×1 depthwise conv, ``horizontal``
    1×kw depthwise conv (stride, padding and dilation split by axis), ``last`` 1×1 conv ``R → out`` (the
    bias). ``meta["rank"]`` is ``R``. Input ``(n, in, H, W)``, output as the original conv."""

    order = ("first", "vertical", "horizontal", "last")

    @staticmethod
    def build(meta: dict[str, Any]) -> dict[str, nn.Module]:
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = meta["kernel"], meta["stride"], meta["padding"], meta["dilation"]
        r = meta["rank"]
        return {"first": nn.Conv2d(meta["in_channels"], r, 1, bias=False),
                "vertical": nn.Conv2d(r, r, (kh, 1), (sh, 1), (ph, 0), (dh, 1), groups=r, bias=False),
                "horizontal": nn.Conv2d(r, r, (1, kw), (1, sw), (0, pw), (1, dw), groups=r, bias=False),
                "last": nn.Conv2d(r, meta["out_channels"], 1, bias=meta["bias"])}  # fmt: skip

    @classmethod
    def from_factors(cls, geometry: dict[str, Any], cp: CP, bias: Tensor | None) -> CPConv2d:
        """The module computing the conv of kernel ``cp.dense()`` with geometry ``geometry``."""
        m = cls({**geometry, "rank": cp.out.shape[1]})
        return m._load({"first": cp.inp.T, "vertical": cp.vertical.T, "horizontal": cp.horizontal.T,
                        "last": cp.out}, bias)  # fmt: skip

    def dense_weight(self) -> Tensor:
        return torch.einsum("or,ry,rx,rc->ocyx", child_weight(self.last)[:, :, 0, 0], child_weight(self.vertical)[:, 0, :, 0],
                            child_weight(self.horizontal)[:, 0, 0, :], child_weight(self.first)[:, :, 0, 0])  # fmt: skip

    @classmethod
    def example(cls) -> tuple[CPConv2d, tuple[Tensor, ...]]:
        """A small strided, dilated instance (6 → R=5 → 8 channels, 3×3) with seeded random factors, and an
        input ``(2, 6, 12, 10)``."""
        g = torch.Generator().manual_seed(0)
        cp = CP(*(torch.randn(n, 5, generator=g) for n in (8, 6, 3, 3)))
        return cls.from_factors(_EXAMPLE_GEOMETRY, cp, torch.randn(8, generator=g)), _example_input(g)
