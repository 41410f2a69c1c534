"""Multiply-accumulates of one forward pass, counted by ``torch.utils.flop_counter``.

The counter sees the aten operators a forward pass dispatches (matmul, addmm, convolution, bmm,
scaled-dot-product attention, ...), so it counts what the model really computes, including module swaps
written in plain torch ops. It does NOT see work done outside aten: custom C++/Triton kernels,
``torch.sparse`` kernels it has no formula for, or calls into other runtimes. Those count as 0 MACs.
Element-wise ops (activations, additions, normalization) are not counted either, as usual for MACs.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

# FlopCounterMode is PyTorch's own counter with per-operator formulas (conv, matmul, attention), kept in
# step with aten; a hand-written per-module table would miss functional calls and module swaps.
from torch.utils.flop_counter import FlopCounterMode

from modelpress.measure._model import baked_view, check_inputs, first_rows

__all__ = ["count_baked_macs", "count_macs"]


def count_macs(model: nn.Module, example_inputs: tuple[Tensor, ...]) -> int:
    """MACs of one forward pass for ONE example (batch 1).

    ``example_inputs``: the model's positional inputs, each of shape ``(n, ...)`` with ``n >= 1``; only
    the first row is used. The count is taken on the model as it deploys — baked (parametrizations
    removed), every swapped module in its ``export_module()`` form (for a factored layer: the factors) —
    in eval mode under ``no_grad``; ``model`` is not changed (its train / eval modes are restored).
    MACs = FLOPs / 2 as the counter counts a multiply-add as 2 FLOPs. Raises `BadInputError` if the
    inputs are not a tuple of batched tensors.
    """
    return count_baked_macs(baked_view(model), example_inputs)


def count_baked_macs(baked: nn.Module, example_inputs: tuple[Tensor, ...]) -> int:
    """`count_macs` of a model already baked (`baked_view`), without another copy."""
    from modelpress.artifact.packed import export_view  # imported here: keeps measure's import light

    inputs = first_rows(check_inputs(example_inputs, "count_macs"), 1)
    modes = {m: m.training for m in baked.modules()}
    deployed = export_view(baked.eval())
    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter:
            deployed(*inputs)
    finally:
        for m, training in modes.items():
            m.train(training)
    return int(counter.get_total_flops()) // 2
