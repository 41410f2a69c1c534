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
import logging
import re
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from modelpress.artifact.baking import bake
from modelpress.artifact.packed import export_view
from modelpress.errors import BadInputError, CompressionError

__all__ = ["OPSET", "export_onnx"]

OPSET = 17
_TWO_GB = 2 * 1024**3


def _dense_copy(model: nn.Module) -> nn.Module:
    """bake(model) in eval mode, with every PackedModule (at any depth) replaced by its deployable
    ``export_module()`` form (`export_view`): onnxruntime has no kernels for our packed layouts, and
    deploy hooks (ONNX int8) rewrite the fp32 graph themselves."""
    return export_view(bake(model).eval())


def _reason(e: Exception) -> str:
    """One informative line from an exporter error (the dynamo exporter puts its cause under
    '## Exception summary', after generic advice; both use ANSI colours)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))
    if "## Exception summary" in text:
        for line in text.split("## Exception summary", 1)[1].splitlines():
            found = re.match(r"<class '[\w.]*?(\w+)'>: (.+)", line.strip())
            if found:
                return f"{found.group(1)}: {found.group(2)[:300]}"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return f"{type(e).__name__}: {lines[0][:300] if lines else ''}"


def _probe_inputs(inputs: tuple[Tensor, ...], dynamic_batch: bool) -> tuple[Tensor, ...]:
    """Inputs unlike the traced ones: the tracer freezes data-dependent Python values into constants
    silently, so checking on the example itself would pass. Float inputs get new values of the same
    scale; with a dynamic batch one extra row is added (token ids and masks keep valid values)."""
    g = torch.Generator().manual_seed(0)
    out = []
    for x in inputs:
        y = x.detach().flip(0) if x.dim() else x.detach()
        if y.is_floating_point():
            y = y * 0.5 + torch.randn(y.shape, generator=g, dtype=y.dtype) * (float(y.std()) if y.numel() > 1 else 1.0)
        if dynamic_batch and y.dim():
            y = torch.cat([y, y[:1]])
        out.append(y.contiguous())
    return tuple(out)


def _mismatch(path: Path, model: nn.Module, inputs: tuple[Tensor, ...], dynamic_batch: bool) -> str | None:
    """Why the exported file disagrees with ``model`` in onnxruntime, or None when it agrees."""
    import onnxruntime as ort  # the runtime users deploy to; imported here to keep `import` light

    probe = _probe_inputs(inputs, dynamic_batch)
    with torch.no_grad():
        ref = model(*probe)
    ref = ref[0] if isinstance(ref, (tuple, list)) else ref
    if not isinstance(ref, Tensor):
        return f"the model returns {type(ref).__name__}, not a logits tensor"
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    try:
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        got = sess.run(None, {f"input_{i}": x.numpy() for i, x in enumerate(probe)})[0]
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
        return f"onnxruntime cannot run it ({str(e).strip().splitlines()[0][:200]})"
    want = ref.detach().float().numpy()
    if got.shape != want.shape:
        return f"onnxruntime output shape {list(got.shape)} != torch {list(want.shape)}"
    diff = float(abs(got.astype("float64") - want).max()) if want.size else 0.0
    tol = 1e-3 * (1.0 + float(abs(want).max()) if want.size else 1.0)
    if not diff <= tol:  # also catches NaN
        return f"onnxruntime output differs from torch by {diff:.3g} (tolerance {tol:.3g})"
    return None


def _param_bytes(model: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))


def export_onnx(model: nn.Module, example_inputs: tuple[Tensor, ...] | Tensor, path: str | Path, *,
                dynamic_batch: bool = True) -> Path:
    """Export ``bake(model)`` (eval mode) to the ONNX file ``path`` and return the path.

    ``example_inputs``: the model's positional inputs, batch axis first (e.g. ``(x,)`` with x of shape
    (n, 1, 28, 28), or ``(input_ids, attention_mask)`` int64 (n, 128)). Inputs are named ``input_0``,
    ``input_1``, ...; the output is ``logits``; with ``dynamic_batch`` the batch axis is symbolic. Opset 17.
    Weights stay inside the one .onnx file (models over 2 GB get an external data file beside it).
    The file is checked once in onnxruntime on inputs other than the traced ones (outputs within
    ``1e-3 * (1 + max|logit|)`` of torch), because tracing can freeze data-dependent values silently.
    Raises BadInputError for bad inputs, CompressionError when the model cannot be exported or the
    export disagrees with torch (the pipeline reports it and goes on).
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

    def legacy() -> None:
        axes = {n: {0: "batch"} for n in [*names, "logits"]} if dynamic_batch else None
        torch.onnx.export(model_d, inputs, str(out), input_names=names, output_names=["logits"],
                          dynamic_axes=axes, opset_version=OPSET, dynamo=False, do_constant_folding=True)

    def dynamo() -> None:
        shapes = tuple({0: torch.export.Dim("batch")} for _ in inputs) if dynamic_batch else None
        torch.onnx.export(model_d, inputs, str(out), input_names=names, output_names=["logits"],
                          dynamic_shapes=shapes, opset_version=max(OPSET, 18), dynamo=True,
                          external_data=large)

    # The dynamo exporter logs a warning per missing torchvision op; not the user's concern.
    quiet = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        return _try_exporters(out, model_d, inputs, dynamic_batch, (legacy, dynamo), type(model).__name__)
    finally:
        quiet.setLevel(level)


def _try_exporters(out: Path, model_d: nn.Module, inputs: tuple[Tensor, ...], dynamic_batch: bool,
                   exporters: tuple, what: str) -> Path:
    errors: list[str] = []
    for exporter in exporters:
        try:
            # Both exporters print progress and deprecation notes; the pipeline reports results itself.
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                with torch.no_grad():
                    exporter()
        except Exception as e:  # noqa: BLE001 - any exporter failure becomes one reported reason
            errors.append(f"{exporter.__name__}: {_reason(e)}")
            continue
        # Deployed = measured: a trace can be silently wrong, so run the file once on fresh inputs.
        why = _mismatch(out, model_d, inputs, dynamic_batch)
        if why is None:
            return out
        errors.append(f"{exporter.__name__}: {why}")
    out.unlink(missing_ok=True)
    for extra in out.parent.glob(out.name + "*.data"):
        extra.unlink()
    raise CompressionError(f"ONNX export of {what} failed ({'; '.join(errors)}).")
