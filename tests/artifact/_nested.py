"""Test-only swapped modules that hold children: a factored linear and a box of swaps."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from modelpress.artifact.packed import PackedModule


class TwoLinear(PackedModule):
    """A factored linear, the shape of a low-rank layer: ``second(first(x))``.

    ``first``: Linear(in → rank, no bias), ``second``: Linear(rank → out). It owns no tensor itself; its
    children are plain modules (stored as state entries) or, after a later Quantize, swaps of their own.
    """

    def __init__(self, first: nn.Linear, second: nn.Linear) -> None:
        super().__init__()
        self.first = first
        self.second = second
        self.shape = {"in": first.in_features, "rank": first.out_features, "out": second.out_features}

    def forward(self, x: Tensor) -> Tensor:
        return self.second(self.first(x))

    @classmethod
    def example(cls) -> tuple[TwoLinear, tuple[Tensor, ...]]:
        torch.manual_seed(0)
        return factor(nn.Linear(8, 6), 3), (torch.randn(2, 8),)

    def pack(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        return {}, dict(self.shape)

    @classmethod
    def unpack(cls, tensors: dict[str, Tensor], meta: dict[str, Any]) -> TwoLinear:
        return cls(nn.Linear(meta["in"], meta["rank"], bias=False), nn.Linear(meta["rank"], meta["out"]))

    def to_dense(self) -> nn.Linear:
        w = self.second.weight @ self.first.weight
        dense = nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            dense.weight.copy_(w)
            dense.bias.copy_(self.second.bias)
        return dense

    def export_module(self) -> nn.Module:
        return nn.Sequential(self.first, self.second)  # the factors: two small matmuls


def factor(linear: nn.Linear, rank: int) -> TwoLinear:
    """``linear`` truncated to ``rank`` by SVD, as a `TwoLinear`."""
    u, s, vh = torch.linalg.svd(linear.weight.detach(), full_matrices=False)
    first, second = nn.Linear(linear.in_features, rank, bias=False), nn.Linear(rank, linear.out_features)
    with torch.no_grad():
        first.weight.copy_(vh[:rank])
        second.weight.copy_(u[:, :rank] * s[:rank])
        second.bias.copy_(linear.bias)
    return TwoLinear(first, second)


class Box(PackedModule):
    """Holds named *swapped* children (rebuilt by the artifact at their own paths) and one own tensor.

    Only for round trips: ``unpack`` rebuilds the children as placeholders that the deeper swaps replace.
    """

    def __init__(self, children: dict[str, nn.Module], tag: Tensor) -> None:
        super().__init__()
        for name, child in children.items():
            self.add_module(name, child)
        self.register_buffer("tag", tag)

    def forward(self, x: Tensor) -> Tensor:
        for child in self.children():
            x = child(x)
        return x

    def pack(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        return {"tag": self.tag.clone()}, {"children": [name for name, _ in self.named_children()]}

    @classmethod
    def unpack(cls, tensors: dict[str, Tensor], meta: dict[str, Any]) -> Box:
        return cls({name: nn.Identity() for name in meta["children"]}, tensors["tag"])

    def to_dense(self) -> nn.Module:
        return nn.Sequential(*self.children())
