"""Size on disk and parameter counts ("every gain is physical").

``artifact_bytes`` is the exact size of the artifact folder ``modelpress.artifact.save`` would write,
taken from the in-memory ``encode`` (no folder is written), so a packed encoding counts only if it really
shrinks the files. ``params`` / ``nonzero_params`` count tensor elements of the model *as it deploys*:
pruning masks applied, each tensor once (tied weights count once), and every `PackedModule` (sparse,
quantized, factored, ...) replaced by its ``export_module()`` form, recursively (`export_view`) — for a
quantized or sparse layer the dense weights it stands for (so a 90% sparse layer keeps its params and
drops its nonzeros whatever its packed form), for a factored layer its factors. A `PackedModule` whose
``export_module()`` is not implemented counts its own parameters and non-scalar buffers instead.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor, nn

from modelpress.measure._model import baked_view

__all__ = ["artifact_bytes", "count_baked_params", "count_params", "nonzero_params", "params"]


def artifact_bytes(model: nn.Module) -> int:
    """Bytes on disk of the artifact folder that ``modelpress.artifact.save`` writes for ``model``.

    Computed from ``modelpress.artifact.saving.encode`` in memory: exactly the bytes ``save`` writes,
    with no folder written. A model that carries no source (a plain ``nn.Module`` built outside
    modelpress) cannot be saved as an artifact; its size is then the bytes of its baked ``state_dict``
    as one ``.safetensors`` file (dense weights, tied tensors once, no manifest). Raises whatever
    ``save`` raises for a model it cannot store.
    """
    from modelpress.artifact.saving import encoded_bytes  # imported here: keeps measure's import light
    from modelpress.source import get_source

    if get_source(model) is None:
        return _state_dict_bytes(model)
    return encoded_bytes(model)


def _state_dict_bytes(model: nn.Module) -> int:
    from safetensors.torch import save as safetensors_save

    state: dict[str, Tensor] = {}
    seen: set[tuple] = set()
    for key, t in baked_view(model).state_dict().items():
        ident = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.dtype)
        if ident not in seen:  # tied weights are one tensor in the file, as the artifact stores them
            seen.add(ident)
            state[key] = t.detach().contiguous()
    return len(safetensors_save(state))


def _deployed_tensors(model: nn.Module) -> Iterator[Tensor]:
    """Each weight tensor of ``model``'s deployable form once (see the module docstring)."""
    from modelpress.artifact.packed import PackedModule, export_view

    seen: set[int] = set()

    def walk(module: nn.Module) -> Iterator[Tensor]:
        if isinstance(module, PackedModule):  # no export form: its stored tensors are the best count
            own = [*module.parameters(), *module.buffers()]
            yield from (t for t in own if t.dim() >= 1 and id(t) not in seen and not seen.add(id(t)))
            return
        for p in module.parameters(recurse=False):
            if id(p) not in seen:  # tied weights (shared embeddings) count once
                seen.add(id(p))
                yield p
        for child in module.children():
            yield from walk(child)

    yield from walk(export_view(model))


def count_params(model: nn.Module) -> tuple[int, int]:
    """``(params, nonzero_params)`` of ``model`` baked (see the module docstring)."""
    return count_baked_params(baked_view(model))


def count_baked_params(baked: nn.Module) -> tuple[int, int]:
    """`count_params` of a model already baked (`baked_view`), without another copy."""
    total = nonzero = 0
    with torch.no_grad():
        for t in _deployed_tensors(baked):
            total += t.numel()
            nonzero += int(torch.count_nonzero(t))
    return total, nonzero


def params(model: nn.Module) -> int:
    """Elements of the deployable model's weights (dense-equivalent for packed modules)."""
    return count_params(model)[0]


def nonzero_params(model: nn.Module) -> int:
    """Elements of the deployable model's weights that are not exactly zero."""
    return count_params(model)[1]

