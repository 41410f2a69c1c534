"""The swap protocol: the contract between a compressed module and the artifact.

A technique's compressed module (``QuantLinear``, a factored linear, a clustered conv, ...) subclasses
`PackedModule`. Swaps nest: a swapped module may hold plain children (the two ``nn.Linear`` of a
factored layer) and swapped children (those same factors after a later ``Quantize``), and may itself sit
inside another swapped module. The artifact walks the model and, for every `PackedModule`:

- stores what :meth:`PackedModule.pack` returns — the module's *own* tensors (those not inside any child
  module) and JSON-able ``meta`` — under the module's path, with its class's import path;
- stores its plain children's tensors as ordinary state-dict entries, and recurses into its swapped
  children, which are stored the same way under their own paths.

On load it imports the class (only from inside the ``modelpress`` package, and only a `PackedModule`
subclass), calls :meth:`PackedModule.unpack` — which must rebuild the module *with* its children at their
stored shapes (their values are then loaded) — sets it at its path, and then does the same for the swapped
modules beneath it, outermost first.

:func:`export_view` gives a model as it deploys (every swap by its ``export_module()``, recursively);
ONNX export, params and MACs use it. Every concrete subclass defines ``example()`` — a small instance
and inputs — and so joins the contract test (tests/artifact/test_swap_contract.py) by existing.

Plain modules (an ``nn.Linear`` with many zeros, say) need none of this: the artifact chooses a lossless
packed encoding per tensor by itself.
"""

from __future__ import annotations

import copy
from typing import Any

from torch import Tensor, nn

__all__ = ["PackedModule", "export_view"]


class PackedModule(nn.Module):
    """Base of every swapped (compressed) module.

    Subclasses implement:

    - ``pack()`` / ``unpack()``: ``unpack(*pack())`` (plus the children's state) rebuilds a module whose
      forward is bit-exact to the original's;
    - ``export_module()``: the deployable form — what ONNX export runs and what params and MACs count
      (for a factored layer: the factors, as a sequence of standard modules). The default is
      ``to_dense()``, right for modules whose packed form only changes storage;
    - ``to_dense()``: the exact dense inverse — one standard module (``nn.Linear``, ``nn.Conv2d``, ...)
      computing the same function, for tests and for techniques that need dense weights;
    - ``example()`` (classmethod): a small instance and inputs for it, for the contract test. A class
      whose name starts with ``_`` is taken for an abstract base and needs none.
    """

    def pack(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """Return ``(tensors, meta)``: the module's own tensors to store (any dtype, any shape; not those
        of child modules) and JSON-able metadata that ``unpack`` needs to rebuild it."""
        raise NotImplementedError

    @classmethod
    def unpack(cls, tensors: dict[str, Tensor], meta: dict[str, Any]) -> PackedModule:
        """Rebuild the module from what :meth:`pack` returned, children included at their stored shapes."""
        raise NotImplementedError

    def to_dense(self) -> nn.Module:
        """The exact dense inverse: one standard module computing the same function."""
        raise NotImplementedError

    def export_module(self) -> nn.Module:
        """The deployable form that ONNX export, params and MACs see: standard modules, or modules that
        hold swapped children of their own (their export forms are taken in turn, see `export_view`)."""
        return self.to_dense()

    @classmethod
    def example(cls) -> tuple[PackedModule, tuple[Tensor, ...]]:
        """A small instance and positional inputs for its forward (batch first), for the contract test
        that every concrete swapped module of the package must pass (tests/artifact/test_swap_contract.py).
        """
        raise NotImplementedError(f"{cls.__name__} defines no example()")


def export_view(module: nn.Module) -> nn.Module:
    """``module`` as it deploys: every `PackedModule` at any depth replaced by its ``export_module()``,
    and the swaps inside an export form by theirs, recursively.

    Nothing is copied but the containers on the way to a swap (shallow copies whose child tables are
    new): parameters and buffers are shared with ``module``, which is not changed. Returns ``module``
    itself when it holds no swap; a swap whose ``export_module`` is not implemented stays as it is.
    Raises TypeError when an ``export_module()`` returns a module of its own class (it would never end).
    """
    if isinstance(module, PackedModule):
        try:
            exported = module.export_module()
        except NotImplementedError:
            exported = module
        if exported is not module:
            if type(exported) is type(module):
                raise TypeError(f"{type(module).__name__}.export_module() returned a {type(module).__name__}")
            return export_view(exported)
    changed = {}
    for name, child in module._modules.items():
        if child is not None:
            view = export_view(child)
            if view is not child:
                changed[name] = view
    if not changed:
        return module
    shallow = copy.copy(module)
    shallow._modules = {**module._modules, **changed}
    return shallow
