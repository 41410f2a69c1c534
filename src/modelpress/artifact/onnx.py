"""`export_onnx`: the model as one ONNX file for onnxruntime (the deployed form that gets measured).

Exporter choice, measured here on torch 2.13 / onnxruntime 1.32 (LeNet-5, a residual CNN with batch
norm, MiniLM + linear head, dynamic batch, outputs within 1e-7 of torch for both): the legacy
TorchScript exporter (``dynamo=False``) exported MiniLM in 1.7 s vs 5.4 s, wrote a slightly smaller
file, and its graph ran as fast or faster in onnxruntime (MiniLM 1 thread: 25.9 vs 29.8 ms); it is also
silent. It is deprecated upstream, so the dynamo exporter (``torch.export`` + onnxscript) is the
fallback when it fails.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from modelpress.artifact.bake import bake
from modelpress.artifact.packed import PackedModule
from modelpress.errors import BadInputError, CompressionError

__all__ = ["export_onnx", "OPSET"]

OPSET = 17
_TWO_GB = 2 * 1024**3


def _dense_copy(model: nn.Module) -> nn.Module:
    """bake(model) in eval mode, with every PackedModule replaced by its ``to_dense()`` form where it has
    one: onnxruntime has no kernels for our packed layouts, and deploy hooks (ONNX int8) rewrite the fp32
    graph themselves."""
    m = bake(model).eval()
    for name, sub in list(m.named_modules()):
        if name and isinstance(sub, PackedModule):
            try:
                dense = sub.to_dense()
            except NotImplementedError:
                continue  # exported as-is; export fails with a clear reason if it cannot be
            try:
                m.set_submodule(name, dense)
            except AttributeError:
                continue  # already replaced together with an enclosing packed module
    return m


def _param_bytes(model: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))


def export_onnx(model: nn.Module, example_inputs: tuple[Tensor, ...] | Tensor, path: str | Path, *,
                dynamic_batch: bool = True) -> Path:
    """Export ``bake(model)`` (eval mode) to the ONNX file ``path`` and return the path.

    ``example_inputs``: the model's positional inputs, batch axis first (e.g. ``(x,)`` with x of shape
    (n, 1, 28, 28), or ``(input_ids, attention_mask)`` int64 (n, 128)). Inputs are named ``input_0``,
    ``input_1``, ...; the output is ``logits``; with ``dynamic_batch`` the batch axis is symbolic. Opset 17.
    Weights stay inside the one .onnx file (models over 2 GB get an external data file beside it).
    Raises BadInputError for bad inputs, CompressionError when the model cannot be exported (the
    pipeline reports it and goes on).
    """
    inputs = (example_inputs,) if isinstance(example_inputs, Tensor) else tuple(example_inputs)
    if not inputs or not all(isinstance(x, Tensor) for x in inputs):
        raise BadInputError("`example_inputs` of `export_onnx` must be a tensor or a tuple of tensors; got "
                            f"{type(example_inputs).__name__}.")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    model_d = _dense_copy(model)
    names = [f"input_{i}" for i in range(len(inputs))]
    large = _param_bytes(model_d) >= _TWO_GB
    errors: list[str] = []

    def legacy() -> None:
        axes = {n: {0: "batch"} for n in [*names, "logits"]} if dynamic_batch else None
        torch.onnx.export(model_d, inputs, str(out), input_names=names, output_names=["logits"],
                          dynamic_axes=axes, opset_version=OPSET, dynamo=False, do_constant_folding=True)

    def dynamo() -> None:
        shapes = tuple({0: torch.export.Dim("batch")} for _ in inputs) if dynamic_batch else None
        torch.onnx.export(model_d, inputs, str(out), input_names=names, output_names=["logits"],
                          dynamic_shapes=shapes, opset_version=max(OPSET, 18), dynamo=True,
                          external_data=large)

    for exporter in (legacy, dynamo):
        try:
            # Both exporters print progress and deprecation notes; the pipeline reports results itself.
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                with torch.no_grad():
                    exporter()
            return out
        except Exception as e:  # noqa: BLE001 - any exporter failure becomes one reported reason
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            errors.append(f"{exporter.__name__}: {type(e).__name__}: {first[:300]}")
    raise CompressionError(f"ONNX export of {type(model).__name__} failed ({'; '.join(errors)}).")
