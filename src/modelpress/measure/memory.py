"""Peak memory of one forward pass, weights included (architecture §6).

torch: the profiler's memory events (every CPU allocation and free made while the forward pass runs)
are walked in time order; the highest running total is the peak of the tensors the pass creates. The
bytes of the parameters, buffers and inputs, which exist before the pass starts, are added. This counts
tensor memory from torch's allocator only: not the Python objects, not the interpreter, not memory
that a custom kernel allocates by itself.

onnxruntime exposes no peak. :func:`peak_onnx_bytes` gives an estimate of the same quantity: the bytes
of the initializers and inputs plus the peak of the intermediate tensors alive at once when the nodes
of the graph onnxruntime runs (after its optimizations) run in order and each tensor is freed after its
last use, with each tensor's real size taken from one run at that batch. onnxruntime's arena rounds
allocations up, prepacks weights and reuses buffers, so its resident memory differs; the figure is for
comparing models, not for sizing a device exactly.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.profiler import ProfilerActivity, profile

from modelpress.measure._model import check_inputs

__all__ = ["peak_forward_bytes", "peak_onnx_bytes"]

# Lines libkineto prints on every profiler start/stop; its log level is read only at library load.
_KINETO_NOISE = ("profiler_start", "profiler_stop")


@contextlib.contextmanager
def _quiet_kineto() -> Iterator[None]:
    """Drop libkineto's start/stop lines from file descriptor 2; pass every other line through."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (embedded interpreters): nothing to filter
        yield
        return
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            kept = [ln for ln in sink.read().splitlines(keepends=True) if not _is_noise(ln)]
            if kept:
                os.write(2, b"".join(kept))


def _is_noise(line: bytes) -> bool:
    text = line.decode(errors="replace")
    return "USDT" in text and any(word in text for word in _KINETO_NOISE)


def _tensor_bytes(tensors: Iterator[Tensor]) -> int:
    """Bytes of the elements of ``tensors``; tied tensors (same data, same shape) count once. Elements,
    not storages: an input that is a view of a whole data set holds only its own rows."""
    seen: set[tuple[int, tuple[int, ...], torch.dtype]] = set()
    total = 0
    for t in tensors:
        key = (t.data_ptr(), tuple(t.shape), t.dtype)
        if t.data_ptr() != 0 and key in seen:
            continue
        seen.add(key)
        total += t.numel() * t.element_size()
    return total


def peak_forward_bytes(model: nn.Module, inputs: tuple[Tensor, ...]) -> int:
    """Peak bytes of tensor memory during one forward pass ``model(*inputs)``, weights included.

    ``inputs``: the model's positional inputs at the batch to measure, each of shape ``(batch, ...)``.
    Returns bytes of parameters + buffers + inputs + the highest running total of the allocations the
    pass makes (under ``no_grad``, in the module's current train/eval mode; pass an eval-mode model).
    Raises `BadInputError` if ``inputs`` is not a tuple of batched tensors.
    """
    inputs = check_inputs(inputs, "peak_forward_bytes")
    resident = _tensor_bytes(iter([*model.parameters(), *model.buffers(), *inputs]))
    # A free of a tensor made before the window would lower the running total: collect garbage first.
    gc.collect()
    # The profiler records every allocation and free with a timestamp; a memory hook of our own would
    # need a custom allocator, which CPU torch does not offer.
    with _quiet_kineto(), torch.no_grad():
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            out = model(*inputs)
        del out
    events = sorted(
        (e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"
    )
    running = 0
    peak = 0
    for _, nbytes in events:
        running += nbytes
        peak = max(peak, running)
    return resident + peak


def peak_onnx_bytes(path: str | Path, inputs: tuple[Tensor, ...]) -> int:
    """Estimated peak bytes of one onnxruntime run of the model at ``path`` on ``inputs``.

    Bytes of the initializers (weights) + the inputs + the peak of the intermediate tensors alive at
    once, nodes taken in order and each tensor freed after its last consumer, on the graph onnxruntime
    runs after its optimizations (so a fused int8 QDQ graph counts int8 weights, not the fp32 ones its
    unfused form would dequantize). Tensor sizes come from one run at this batch. When the optimized
    graph cannot be run that way, the exported graph is used; when neither can, the figure falls back to
    initializers + inputs + outputs (a lower bound) with a warning. Raises `BadInputError` when the file
    is missing or not ONNX or the inputs do not fit the model, `CompressionError` when onnxruntime
    cannot load it.
    """
    import onnx  # imported here: only ONNX measurement needs it

    from modelpress.measure.runtime import load_onnx, make_session, onnx_feed

    inputs = check_inputs(inputs, "peak_onnx_bytes")
    original = load_onnx(path)
    input_bytes = sum(t.numel() * t.element_size() for t in inputs)
    graphs = []
    with tempfile.TemporaryDirectory(prefix="modelpress-ort-") as tmp:
        optimized = Path(tmp) / "optimized.onnx"
        # A graph over 2 GB cannot be written back: then only the exported one is measured.
        with contextlib.suppress(Exception):
            make_session(path, threads=1, save_optimized=optimized)
            graphs.append(onnx.load(str(optimized)))
    graphs.append(original)
    for model in graphs:
        try:
            return _initializer_bytes(model) + input_bytes + _peak_intermediates(model, inputs)
        except Exception:  # noqa: BLE001, S112 - an op that refuses extra outputs: try the next graph
            continue
    session = make_session(path, threads=1)
    outputs = session.run(None, onnx_feed(session, inputs))
    warnings.warn(
        f"peak memory of `{path}` could not be estimated from its intermediates; reporting weights + "
        "inputs + outputs (a lower bound).",
        stacklevel=2,
    )
    return _initializer_bytes(original) + input_bytes + sum(int(np.asarray(o).nbytes) for o in outputs)


def _initializer_bytes(model: Any) -> int:
    from onnx import numpy_helper

    return sum(numpy_helper.to_array(t).nbytes for t in model.graph.initializer)


def _peak_intermediates(model: Any, inputs: tuple[Tensor, ...]) -> int:
    """Peak bytes of intermediates alive at once in ``model`` (a ModelProto, changed in place)."""
    import onnx

    from modelpress.measure.runtime import make_session, onnx_feed

    graph = model.graph
    final = {o.name for o in graph.output}
    produced = {o for node in graph.node for o in node.output if o}
    for name in sorted(produced - final):
        graph.output.append(onnx.ValueInfoProto(name=name))  # expose every intermediate to read its size
    # Optimizations off: the graph is already the one to measure, and extra outputs must survive.
    session = make_session(model.SerializeToString(), threads=1, optimize=False)
    names = [o.name for o in session.get_outputs()]
    values = session.run(names, onnx_feed(session, inputs))
    size = {n: int(np.asarray(v).nbytes) for n, v in zip(names, values, strict=True)}
    del values

    last_use: dict[str, int] = {}
    for i, node in enumerate(graph.node):
        for name in node.input:
            last_use[name] = i
    live = peak = 0
    for i, node in enumerate(graph.node):
        outs = [o for o in node.output if o]
        live += sum(size.get(o, 0) for o in outs)
        peak = max(peak, live)
        # Free what this node was the last to read, and outputs nobody reads; graph outputs stay.
        done = {n for n in node.input if n in produced and last_use[n] == i}
        done |= {o for o in outs if o not in last_use}
        live -= sum(size.get(n, 0) for n in done - final)
    return peak
