"""Size on disk and parameter counts (DESIGN §5: "every gain is physical").

``artifact_bytes`` saves the model and measures the folder, so a packed encoding counts only if it
really shrinks the files. ``params`` / ``nonzero_params`` count tensor elements of the baked model
(pruning masks applied, each parametrized weight once). A `PackedModule` (sparse, quantized, clustered
...) counts the elements of the dense weights it stands for, read from its ``to_dense()``: params is the
dense-equivalent element count and nonzero the ones among those that are not exactly zero, so a 90%
sparse layer keeps its params and drops its nonzeros whatever its packed form. A `PackedModule` whose
``to_dense()`` is not implemented counts its own parameters and non-scalar buffers instead.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor, nn

from modelpress.measure._model import baked_eval_copy

__all__ = ["artifact_bytes", "count_baked_params", "count_params", "nonzero_params", "params"]


def artifact_bytes(model: nn.Module) -> int:
    """Bytes on disk of the artifact folder that ``modelpress.artifact.save`` writes for ``model``.

    The model is saved into a temporary folder (removed afterwards) and the files are measured there.
    A model that carries no source (a plain ``nn.Module`` built outside modelpress) cannot be saved as an
    artifact; its size is then the bytes of its baked ``state_dict`` written as one ``.safetensors`` file
    (dense weights, no manifest). Raises whatever ``save`` raises for a model it cannot store.
    """
    from modelpress.artifact import folder_bytes, save  # imported here: keeps measure's import light
    from modelpress.source import get_source

    with tempfile.TemporaryDirectory(prefix="modelpress-size-") as tmp:
        if get_source(model) is None:
            return _state_dict_bytes(model, Path(tmp) / "weights.safetensors")
        path = save(model, Path(tmp) / "model")
        return int(folder_bytes(path))


def _state_dict_bytes(model: nn.Module, file: Path) -> int:
    # save_model (not save_file) writes tied weights once, as the artifact would.
    from safetensors.torch import save_model

    save_model(baked_eval_copy(model), str(file))
    return file.stat().st_size


def _dense_tensors(model: nn.Module) -> Iterator[Tensor]:
    """Each weight tensor of ``model`` once: parameters of plain modules, the dense equivalents'
    parameters of `PackedModule`s (whose own tensors are an encoding of those)."""
    from modelpress.artifact.packed import PackedModule

    seen: set[int] = set()

    def walk(module: nn.Module) -> Iterator[Tensor]:
        if isinstance(module, PackedModule):
            try:
                dense = module.to_dense()
            except NotImplementedError:
                dense = None
            if dense is not None:
                yield from dense.parameters()
                return
            # No dense form: its stored tensors are the best count there is.
            yield from (t for t in [*module.parameters(), *module.buffers()] if t.dim() >= 1)
            return
        for p in module.parameters(recurse=False):
            if id(p) not in seen:  # tied weights (shared embeddings) count once
                seen.add(id(p))
                yield p
        for child in module.children():
            yield from walk(child)

    yield from walk(model)


def count_params(model: nn.Module) -> tuple[int, int]:
    """``(params, nonzero_params)`` of ``model`` baked (see the module docstring)."""
    return count_baked_params(baked_eval_copy(model))


def count_baked_params(baked: nn.Module) -> tuple[int, int]:
    """`count_params` of a model already baked (`baked_eval_copy`), without another copy."""
    total = nonzero = 0
    with torch.no_grad():
        for t in _dense_tensors(baked):
            total += t.numel()
            nonzero += int(torch.count_nonzero(t))
    return total, nonzero


def params(model: nn.Module) -> int:
    """Elements of the baked model's weights (dense-equivalent for packed modules)."""
    return count_params(model)[0]


def nonzero_params(model: nn.Module) -> int:
    """Elements of the baked model's weights that are not exactly zero."""
    return count_params(model)[1]
