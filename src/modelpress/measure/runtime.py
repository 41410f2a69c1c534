"""Running an exported ONNX model in onnxruntime as a `Predict` (architecture §6, "Deployed = measured").

onnxruntime is the CPU runtime the artifact deploys to (its int8 kernels are where quantization pays),
so the deployed model is measured in it rather than re-simulated in torch.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from modelpress.errors import BadInputError, CompressionError
from modelpress.measure._model import check_inputs, check_positive_int
from modelpress.tasks.task import Predict

__all__ = ["check_onnx_file", "chunked_predict", "load_onnx", "make_session", "onnx_feed", "ort_predict"]

# Rows per onnxruntime call when the model accepts any batch: bounds the memory of one call.
_CHUNK = 256

# numpy dtype for each ONNX tensor type string that onnxruntime reports for an input.
_NP_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


def check_onnx_file(path: str | Path) -> Path:
    """``path`` as a Path if it is an existing file; else `BadInputError`."""
    p = Path(path)
    if not p.is_file():
        raise BadInputError(f"ONNX file `{p}` does not exist. Fix: export the model first (export_onnx).")
    return p


def load_onnx(path: str | Path) -> Any:
    """The ``onnx.ModelProto`` at ``path``, external data included. Raises `BadInputError` if it is
    missing or not an ONNX model."""
    import onnx  # imported here: only ONNX measurement needs it

    p = check_onnx_file(path)
    try:
        model = onnx.load(str(p))
    except Exception as exc:  # onnx raises DecodeError, OSError, ... for a file that is not ONNX
        raise BadInputError(f"`{p}` is not a readable ONNX model ({exc}). Fix: pass a .onnx file.") from exc
    if not model.graph.node:
        raise BadInputError(f"`{p}` is not an ONNX model (its graph is empty). Fix: pass a .onnx file.")
    return model


def make_session(
    model: str | Path | bytes, *, threads: int = 1, optimize: bool = True, save_optimized: Path | None = None
) -> Any:
    """An onnxruntime CPU session: ``threads`` intra-op threads, 1 inter-op thread, all graph
    optimizations (or none with ``optimize=False``). Raises `BadInputError` if the file is missing or
    not ONNX, `CompressionError` if it is ONNX that onnxruntime cannot load. ``save_optimized``: a file
    to write the graph onnxruntime runs after its optimizations (fused, re-laid-out nodes)."""
    import onnxruntime as ort

    check_positive_int(threads, "threads", "ort_predict")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    opts.log_severity_level = 3  # errors only: its warnings about unused initializers are noise
    if save_optimized is not None:
        opts.optimized_model_filepath = str(save_optimized)
    source = model if isinstance(model, bytes) else str(check_onnx_file(model))
    try:
        return ort.InferenceSession(source, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail / InvalidGraph / InvalidProtobuf types
        if not isinstance(model, bytes):
            load_onnx(model)  # not ONNX at all: the user's input is wrong (BadInputError)
        where = "the model" if isinstance(model, bytes) else f"`{model}`"
        # A valid ONNX graph that onnxruntime cannot run (an operator or type it lacks) is a failure of
        # what produced the graph; the pipeline reports CompressionError and goes on.
        raise CompressionError(f"onnxruntime cannot load {where}: {str(exc).strip()[:500]}") from exc


def _input_order(session: Any) -> list[Any]:
    """Session inputs ordered by position: ``input_<i>`` names by ``i``, others as declared."""
    ins = list(session.get_inputs())
    if all(re.fullmatch(r"input_\d+", i.name) for i in ins):
        ins.sort(key=lambda i: int(i.name.split("_")[1]))
    return ins


def onnx_feed(session: Any, inputs: tuple[Tensor, ...]) -> dict[str, np.ndarray]:
    """Map positional torch inputs to the session's input names, as numpy arrays of its input types."""
    ins = _input_order(session)
    if len(ins) != len(inputs):
        raise BadInputError(
            f"the ONNX model takes {len(ins)} inputs ({[i.name for i in ins]}); got {len(inputs)}. "
            "Fix: pass the same inputs as to the torch model."
        )
    feed = {}
    for spec, t in zip(ins, inputs, strict=True):
        arr = t.detach().cpu().numpy()
        want = _NP_TYPES.get(spec.type)
        feed[spec.name] = np.ascontiguousarray(arr if want is None else arr.astype(want, copy=False))
    return feed


def _fixed_batch(session: Any) -> int | None:
    """The batch the model was exported with, or None when its first dimension is dynamic."""
    dims = [i.shape[0] if i.shape else None for i in session.get_inputs()]
    fixed = {d for d in dims if isinstance(d, int) and d > 0}
    return fixed.pop() if len(fixed) == 1 else None


def ort_predict(path: str | Path, *, threads: int = 1) -> Predict:
    """A `Predict` that runs the ONNX model at ``path`` in onnxruntime on the CPU.

    The predict takes the model's positional inputs (a tuple of tensors, each ``(n, ...)``, any ``n``),
    feeds them as ``input_0, input_1, ...`` in chunks (of the exported batch when the batch dimension is
    fixed, padding the last chunk; else of 256 rows), and returns the first output as a torch
    tensor of shape ``(n, ...)``. The session uses ``threads`` intra-op threads, one inter-op thread and
    all graph optimizations. Raises `BadInputError` when the file is missing or not ONNX (here), or when
    the inputs do not match the model's (at call time); `CompressionError` when the file is ONNX that
    onnxruntime cannot load.
    """
    session = make_session(path, threads=threads)
    first = session.get_outputs()[0].name
    return chunked_predict(lambda part: session.run([first], onnx_feed(session, part))[0],
                           _fixed_batch(session), "ort_predict")


def chunked_predict(run: Callable[[tuple[Tensor, ...]], Any], fixed: int | None, owner: str) -> Predict:
    """A `Predict` that calls ``run(part) -> array`` on chunks of its inputs and concatenates the outputs.

    Chunks hold ``fixed`` rows when the model was exported with that fixed batch (the last chunk is
    padded by repeating its last row, and the padding is cut from the output), else 256 rows. ``run``
    returns the first output of one chunk (numpy array or anything ``np.asarray`` takes), shape
    ``(rows, ...)``. Shared by the onnxruntime and OpenVINO predicts. ``owner`` names the caller in
    input errors (`BadInputError` at call time).
    """
    chunk = fixed or _CHUNK

    def predict(inputs: tuple[Tensor, ...]) -> Tensor:
        inputs = check_inputs(inputs, owner)
        n = inputs[0].shape[0]
        outs = []
        for start in range(0, n, chunk):
            part = tuple(t[start : start + chunk] for t in inputs)
            rows = part[0].shape[0]
            if fixed is not None and rows < fixed:  # a fixed-batch export needs full batches
                part = tuple(torch.cat([t, t[-1:].expand(fixed - rows, *t.shape[1:])]) for t in part)
            outs.append(torch.from_numpy(np.asarray(run(part))[:rows]))
        return outs[0] if len(outs) == 1 else torch.cat(outs)

    return predict
