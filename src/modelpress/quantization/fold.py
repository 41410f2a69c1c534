"""Fold BatchNorm into the convolution before it (inference form), in place.

``y = γ (conv(x) + b − μ) / sqrt(σ² + ε) + β`` is a conv with weight ``W · γ / sqrt(σ² + ε)`` (per output
channel) and bias ``(b − μ) γ / sqrt(σ² + ε) + β``. Quantizing the folded weight is what the deployed
model runs (onnxruntime folds BN into Conv too), so PTQ and QAT quantize folded weights.

Conv → BN pairs are found with ``torch.fx`` (a BN whose only input is a conv used by nothing else);
models fx cannot trace (most Hugging Face models have no BatchNorm anyway) are left unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from modelpress.artifact.packed import PackedModule

__all__ = ["FoldedBatchNorm", "fold_batchnorm", "fold_conv_bn"]


class FoldedBatchNorm(PackedModule):
    """What is left of a BatchNorm folded into the conv before it: the identity.

    A `PackedModule` (not ``nn.Identity``) so that the artifact records the swap and rebuilds it.
    """

    def __init__(self, num_features: int = 0) -> None:
        super().__init__()
        self.num_features = int(num_features)

    def forward(self, x: Tensor) -> Tensor:
        return x

    @classmethod
    def example(cls) -> tuple[FoldedBatchNorm, tuple[Tensor, ...]]:
        return cls(4), (torch.randn(2, 4, 3, 3, generator=torch.Generator().manual_seed(0)),)

    def pack(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        return {}, {"num_features": self.num_features}

    @classmethod
    def unpack(cls, tensors: dict[str, Tensor], meta: dict[str, Any]) -> FoldedBatchNorm:
        return cls(meta.get("num_features", 0))

    def to_dense(self) -> nn.Module:
        return nn.Identity()


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Fold ``bn`` (eval statistics) into ``conv`` in place; the caller replaces ``bn`` by Identity."""
    with torch.no_grad():
        mean = bn.running_mean if bn.running_mean is not None else torch.zeros(bn.num_features)
        var = bn.running_var if bn.running_var is not None else torch.ones(bn.num_features)
        gamma = bn.weight if bn.weight is not None else torch.ones(bn.num_features)
        beta = bn.bias if bn.bias is not None else torch.zeros(bn.num_features)
        factor = gamma / torch.sqrt(var + bn.eps)
        conv.weight.mul_(factor.reshape(-1, *([1] * (conv.weight.dim() - 1))))
        b = conv.bias if conv.bias is not None else torch.zeros_like(mean)
        new_bias = (b - mean) * factor + beta
        if conv.bias is None:
            conv.bias = nn.Parameter(new_bias)
        else:
            conv.bias.copy_(new_bias)


class _ConvLeafTracer(torch.fx.Tracer):
    """fx's tracer, with every Conv2d a leaf — subclasses too (a TF-"SAME" conv pads in its forward):
    BatchNorm after a conv is a per-channel affine map of the conv's output, so folding it into the
    weight and bias is exact whatever the conv's forward does to its input."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, nn.Conv2d) or super().is_leaf_module(m, qualname)


def fold_batchnorm(model: nn.Module) -> list[tuple[str, str]]:
    """Fold every Conv2d → BatchNorm2d pair of ``model`` in place; return the ``(conv, bn)`` names.

    The BatchNorm modules become `FoldedBatchNorm` (an identity the artifact can rebuild). Returns ``[]`` when the model cannot be traced.
    """
    if not any(isinstance(m, nn.BatchNorm2d) for m in model.modules()):
        return []
    try:
        graph = _ConvLeafTracer().trace(model)
    except Exception:  # noqa: BLE001 - fx cannot trace data-dependent control flow; folding is an optimisation only
        return []
    mods = dict(model.named_modules())
    pairs: list[tuple[str, str]] = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(mods.get(node.target), nn.BatchNorm2d):
            continue
        src = node.args[0] if node.args else None
        if (getattr(src, "op", None) == "call_module" and isinstance(mods.get(src.target), nn.Conv2d)
                and len(src.users) == 1):
            pairs.append((src.target, node.target))
    # a conv module called twice (shared) would be folded twice: skip shared modules
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    # shared modules, and convs under a parametrization (pruning masks), are left unfolded
    pairs = [(c, b) for c, b in pairs if calls[c] == 1 and calls[b] == 1
             and not parametrize.is_parametrized(mods[c])]
    for conv_name, bn_name in pairs:
        fold_conv_bn(mods[conv_name], mods[bn_name])
        model.set_submodule(bn_name, FoldedBatchNorm(mods[bn_name].num_features))
    return pairs
