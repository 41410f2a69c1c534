"""ExecuTorch as the phone / embedded runtime: load a ``.pte`` program, run it, count what it delegates.

Why ExecuTorch beside onnxruntime and OpenVINO (measured, docs/bench-runtimes.md): it is PyTorch's own
on-device runtime, and its XNNPACK delegate runs the same kernels on Android / iOS ARM CPUs as on x86,
so a ``.pte`` timed here is the file a phone runs. It is an optional dependency
(``pip install 'modelpress[executorch]'``): without it `executorch_available` is False and callers skip
its candidates with a note, or raise `BadInputError` where the user asked for it.

Where the speed goes on a device: ops the XNNPACK partitioner takes run in its kernels; every other op
falls back to ExecuTorch's portable (reference C++) kernels. `pte_ops` reads the portable kernel calls
and the delegate calls off the serialized program, so a fallback is always visible.

>>> predict = pte_predict("out/model.pte", threads=1)               # doctest: +SKIP
>>> pte_ops("out/model.pte").portable                               # doctest: +SKIP
{'aten::embedding': 1, 'aten::mean': 1}
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from modelpress.errors import BadInputError, CompressionError, bad_value
from modelpress.measure._model import check_positive_int
from modelpress.measure.optional import is_installed, not_installed
from modelpress.measure.runtime import chunked_predict
from modelpress.tasks.task import Predict

__all__ = ["INSTALL_HINT", "OpCounts", "executorch_available", "load_method", "pte_bytes", "pte_ops",
           "pte_predict", "require_executorch", "set_threads"]

INSTALL_HINT = "pip install 'modelpress[executorch]' (or pip install executorch)"
# Instructions that are bookkeeping, not compute (memory planning, list building, tuple access).
_NOT_COMPUTE = frozenset({"executorch_prim::et_view", "aten::sym_size", "executorch_prim::add",
                          "executorch_prim::mul", "executorch_prim::sub", "executorch_prim::floordiv"})


def executorch_available() -> bool:
    """Whether the ``executorch`` package is installed (its import is not attempted: it is slow)."""
    return is_installed("executorch")


def require_executorch(owner: str) -> Any:
    """The ``executorch`` module; `BadInputError` naming ``owner`` and the install command when it is not
    installed (on the command line: exit code 2)."""
    if not executorch_available():
        raise not_installed(owner, "ExecuTorch", INSTALL_HINT)
    import executorch

    return executorch


@lru_cache(maxsize=1)
def _runtime() -> Any:
    """One ExecuTorch `Runtime` per process, with the quantized kernels registered (importing
    ``executorch.kernels.quantized`` registers ``quantized_decomposed::embedding_byte`` and the
    (de)quantize kernels that an int8 program's non-delegated part calls)."""
    require_executorch("the ExecuTorch runtime")
    import executorch.kernels.quantized  # noqa: F401 - registers kernels as a side effect
    from executorch.runtime import Runtime

    return Runtime.get()


def set_threads(threads: int) -> None:
    """Size ExecuTorch's process-wide thread pool (XNNPACK's kernels run on it) to ``threads``.

    Size it before anything is lowered to XNNPACK in the process: resizing it after an export, with
    onnxruntime loaded, aborted the process here (a pthread priority assertion), so `export_pte` sizes
    it first and this is a no-op when the size is already right."""
    from executorch.extension.pybindings import portable_lib

    if portable_lib._threadpool_get_thread_count() != threads:
        portable_lib._unsafe_reset_threadpool(threads)


def _check_pte(path: str | Path, owner: str) -> Path:
    p = Path(path)
    if p.suffix != ".pte":
        raise bad_value("path", owner, "an ExecuTorch program file (.pte)", str(p))
    if not p.is_file():
        raise BadInputError(f"model file `{p}` does not exist. Fix: export it first "
                            "(compress --runtime executorch writes DIR/model.pte).")
    return p


def load_method(path: str | Path, owner: str = "load_method") -> Any:
    """The ``forward`` method of the ExecuTorch program at ``path``, loaded. Raises `BadInputError` for a
    missing file or when ExecuTorch is not installed, `CompressionError` when ExecuTorch cannot load it."""
    p = _check_pte(path, owner)
    runtime = _runtime()
    try:
        program = runtime.load_program(p)
        return program.load_method("forward")
    except Exception as exc:  # ExecuTorch raises RuntimeError with its error code
        raise CompressionError(f"ExecuTorch cannot load `{p}`: {str(exc).strip()[:400]}") from exc


def pte_predict(path: str | Path, *, threads: int = 1) -> Predict:
    """A `Predict` running the program at ``path`` in the ExecuTorch runtime with ``threads`` threads:
    positional torch inputs ``(n, ...)`` (any ``n``; the program's fixed export batch is filled by
    chunks) → its first output ``(n, ...)`` as a float tensor. Raises as `load_method`, and
    `BadInputError` at call time for inputs of the wrong number or shape."""
    check_positive_int(threads, "threads", "pte_predict")
    method = load_method(path, "pte_predict")
    meta = method.metadata
    specs = [tuple(meta.input_tensor_meta(i).sizes()) for i in range(meta.num_inputs())]
    fixed = specs[0][0] if specs and specs[0] else None

    def run(part: tuple[Tensor, ...]) -> np.ndarray:
        if len(part) != len(specs):
            raise BadInputError(f"the ExecuTorch program takes {len(specs)} inputs; got {len(part)}. "
                                "Fix: pass the same inputs as to the torch model.")
        for i, (spec, t) in enumerate(zip(specs, part, strict=True)):
            if tuple(t.shape) != spec:
                raise BadInputError(f"input {i} of the ExecuTorch program has shape {list(spec)}; got "
                                    f"{list(t.shape)}. Fix: pass inputs of the shape the model was exported "
                                    "with (the task it was compressed for).")
        set_threads(threads)
        out = method.execute([t.detach().contiguous() for t in part])[0]
        return out.float().numpy() if isinstance(out, torch.Tensor) else np.asarray(out)

    return chunked_predict(run, fixed, "pte_predict")


def pte_bytes(path: str | Path) -> int:
    """Bytes on disk of the ``.pte`` file (weights, program and delegate payloads are all in it)."""
    return _check_pte(path, "pte_bytes").stat().st_size


@dataclass(frozen=True)
class OpCounts:
    """What an ExecuTorch program runs where: ``delegated`` ops per name inside XNNPACK (known from the
    lowering; empty when read from a file alone), ``portable`` kernel calls per op name (the fallback),
    ``delegate_calls`` (calls into the XNNPACK blob)."""

    delegated: dict[str, int] = field(default_factory=dict)
    portable: dict[str, int] = field(default_factory=dict)
    delegate_calls: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"delegated_ops": sum(self.delegated.values()), "portable_ops": sum(self.portable.values()),
                "delegate_calls": self.delegate_calls, "delegated": dict(self.delegated),
                "portable": dict(self.portable)}

    def describe(self) -> str:
        """One line: ``12 ops delegated to XNNPACK, 2 portable (aten::embedding 1, aten::mean 1)``."""
        port = ", ".join(f"{k} {v}" for k, v in sorted(self.portable.items()))
        head = (f"{sum(self.delegated.values())} ops delegated to XNNPACK" if self.delegated
                else f"{self.delegate_calls} XNNPACK delegate call(s)")
        return f"{head}, {sum(self.portable.values())} portable" + (f" ({port})" if port else "")


def pte_ops(path: str | Path) -> OpCounts:
    """The portable kernel calls and delegate calls of the program at ``path``, read off its serialized
    execution plan (``forward``). Raises `BadInputError` for a missing file or without ExecuTorch."""
    p = _check_pte(path, "pte_ops")
    require_executorch("pte_ops")
    from executorch.exir._serialize._program import deserialize_pte_binary
    from executorch.exir.schema import DelegateCall, KernelCall

    plan = deserialize_pte_binary(p.read_bytes()).program.execution_plan[0]
    portable: Counter[str] = Counter()
    calls = 0
    for chain in plan.chains:
        for ins in chain.instructions:
            args = ins.instr_args
            if isinstance(args, KernelCall):
                op = plan.operators[args.op_index]
                if op.name not in _NOT_COMPUTE:
                    portable[op.name] += 1
            elif isinstance(args, DelegateCall):
                calls += 1
    return OpCounts(portable=dict(portable), delegate_calls=calls)
