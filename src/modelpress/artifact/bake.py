"""`bake`: a copy of a model whose state holds its effective weights (no parametrizations)."""

from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils import parametrize

from modelpress.source import attach_source, get_source

__all__ = ["bake"]


def bake(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` with every ``torch.nn.utils.parametrize`` parametrization removed.

    Pruning keeps masks as parametrizations (so fine-tuning cannot revive pruned weights); removing them
    with ``leave_parametrized=True`` writes the masked weights into plain parameters, which is what the
    artifact stores and ONNX exports. The caller's model is never changed; its source stays attached.
    """
    baked = copy.deepcopy(model)
    for module in baked.modules():
        if parametrize.is_parametrized(module):
            # deepcopy shares the dynamically made `Parametrized<Cls>` class with the original, and
            # removal deletes the weight property from that class: give the copy its own class first,
            # or the caller's model would lose its `weight`.
            cls = type(module)
            body = {k: v for k, v in vars(cls).items() if k not in ("__dict__", "__weakref__")}
            module.__class__ = type(cls.__name__, cls.__bases__, body)
            for name in list(module.parametrizations.keys()):
                parametrize.remove_parametrizations(module, name, leave_parametrized=True)
    source = get_source(model)
    if source is not None and get_source(baked) is None:
        attach_source(baked, source)
    return baked
