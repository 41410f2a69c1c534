"""The contract between compressed modules and the artifact.

A technique's compressed module (``SparseLinear``, ``QuantLinear``, ...) subclasses `PackedModule`. On
save, the artifact calls :meth:`PackedModule.pack` and stores the returned tensors in safetensors and the
returned JSON-able ``meta`` in the manifest, with the class's import path; on load it imports the class
(only from inside the ``modelpress`` package, and only a `PackedModule` subclass) and calls
:meth:`PackedModule.unpack`. Plain modules (``nn.Linear`` with many zeros, say) need none of this: the
artifact chooses a lossless packed encoding per tensor by itself.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

__all__ = ["PackedModule"]


class PackedModule(nn.Module):
    """Base of every compressed module that stores itself in a packed form.

    Subclasses implement ``pack`` and ``unpack`` so that ``unpack(*pack())`` rebuilds a module whose
    forward is bit-exact to the original's, and ``to_dense()`` returns an equivalent standard module
    (used by ONNX export where the packed form has no operator).
    """

    def pack(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """Return ``(tensors, meta)``: tensors to store (any dtype, any shape) and JSON-able metadata."""
        raise NotImplementedError

    @classmethod
    def unpack(cls, tensors: dict[str, Tensor], meta: dict[str, Any]) -> PackedModule:
        """Rebuild the module from what :meth:`pack` returned."""
        raise NotImplementedError

    def to_dense(self) -> nn.Module:
        """An equivalent standard module (``nn.Linear``, ``nn.Conv2d``, ...)."""
        raise NotImplementedError
