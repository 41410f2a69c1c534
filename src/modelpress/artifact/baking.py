"""`bake`: a copy of a model whose state holds its effective weights (no parametrizations)."""

from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils import parametrize

__all__ = ["bake", "unparametrize"]


def bake(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` with every ``torch.nn.utils.parametrize`` parametrization removed.

    Pruning keeps masks as parametrizations (so fine-tuning cannot revive pruned weights); removing them
    with ``leave_parametrized=True`` writes the masked weights into plain parameters, which is what the
    artifact stores and ONNX exports. The caller's model is never changed; its source stays attached.
    """
    baked = copy.deepcopy(model)
    for module in baked.modules():
        if parametrize.is_parametrized(module):
            for name in list(module.parametrizations.keys()):
                unparametrize(module, name)
    return baked  # deepcopy carries the attached source along


def unparametrize(module: nn.Module, name: str) -> None:
    """Remove the parametrizations of ``module.<name>``, keeping the effective tensor as a plain one.

    A deep copy of a parametrized module shares its dynamically made ``Parametrized<Cls>`` class with the
    original, and removal deletes the ``name`` property from that class: so the module first gets a class
    of its own, or every copy (a rollback backup, a timing snapshot) would lose its ``name``.
    """
    cls = type(module)
    body = {k: v for k, v in vars(cls).items() if k not in ("__dict__", "__weakref__")}
    module.__class__ = type(cls.__name__, cls.__bases__, body)
    parametrize.remove_parametrizations(module, name, leave_parametrized=True)
