"""ExecuTorch candidates of a deployment, judged by the same chooser as onnxruntime's and OpenVINO's.

Which ExecuTorch forms can be right (measured, docs/bench-runtimes.md): the fp32 program lowered to
XNNPACK (the unchanged form), and for an 8-bit ``Quantize`` the int8 program — static (weights and
activations) when modelpress calibrated static activations, dynamic (activations quantized per call)
otherwise, which is also what XNNPACK offers for weight-only 8-bit; for 4-bit weights the int4
program (``int4-dynamic``: XNNPACK's int4 group-wise Linear kernels with int8 per-token inputs, 4-bit
embedding tables). All are written by `modelpress.quantization.executorch_export.export_pte`, which
carries modelpress's codes, scales and float layers into the program. 16-bit programs are not built yet
(only fp32 is offered then), and the notes say so.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from modelpress.context import StepContext
from modelpress.errors import BadInputError, CompressionError
from modelpress.quantization.config import Quantize

__all__ = ["ExecuTorchCandidate", "executorch_candidates", "executorch_forms", "ship_executorch"]


@dataclass(frozen=True)
class ExecuTorchCandidate:
    """One ExecuTorch form: its name, the written ``.pte``, the predict, its bytes, whether it is the
    unchanged form (``baseline``) and report columns (``info``: mode, delegated / portable ops, what
    of modelpress's decisions was carried over)."""

    name: str
    path: Path
    predict: Any
    bytes: int
    baseline: bool
    info: dict[str, Any]


def _modes(config: Quantize | None, notes: list[str]) -> list[str]:
    if config is None or config.weight_bits is None:
        if config is not None:
            notes.append("ExecuTorch: 16-bit weights are not offered; its fp32 program is")
        return ["fp32"]
    if config.weight_bits == 4:  # not an 8-bit program in its place: it would ship larger than asked
        return ["int4-dynamic", "fp32"]
    return ["int8-static" if config.activations == "static" else "int8-dynamic", "fp32"]


def executorch_forms(model: nn.Module, ctx: StepContext, tmp: Path, config: Quantize | None = None
                     ) -> tuple[list[ExecuTorchCandidate], list[str]]:
    """The ExecuTorch programs of ``model`` for ``config`` (None: a float model, fp32 only), exported
    with ``ctx.target.batch_size`` rows and run with ``ctx.target.threads``; ``(candidates, notes)``.
    A form that cannot be exported is a note, not an error."""
    from modelpress.measure.executorch_runtime import pte_predict
    from modelpress.quantization.executorch_export import export_pte
    from modelpress.quantization.ptq import calibration_split

    notes: list[str] = []
    out: list[ExecuTorchCandidate] = []
    for mode in _modes(config, notes):
        calibration = None
        if mode == "int8-static":
            calibration = calibration_split(ctx.task.calibration, config.calibration_size)
        try:
            pte = export_pte(model, ctx.task.example_inputs, tmp / f"et-{mode}.pte", mode=mode,
                             calibration=calibration, batch_size=ctx.target.batch_size, threads=ctx.target.threads)
            predict = pte_predict(pte.path, threads=ctx.target.threads)
        except CompressionError as e:
            notes.append(f"executorch {mode}: {e}")
            continue
        except BadInputError:
            if mode != "int4-dynamic":
                raise
            # no 4-bit layer XNNPACK's kernels take (every group fails to divide its row): an all-8-bit
            # program would ship larger than the recipe asked, so it is not offered in its place
            notes.append("executorch int4-dynamic: not offered, no 4-bit layer fits XNNPACK's 4-bit kernels "
                         "(the group size must divide each layer's inputs)")
            continue
        notes += [f"executorch {mode}: {n}" for n in pte.notes]
        info = {"runtime": "executorch", "format": mode, "label": "float32" if mode == "fp32" else mode,
                "ops": pte.ops.to_dict(), "carried": pte.carried}
        out.append(ExecuTorchCandidate(f"executorch {mode}", pte.path, predict, pte.bytes, mode == "fp32", info))
    return out, notes


def executorch_candidates(model: nn.Module, config: Quantize | None, ctx: StepContext, tmp: Path
                          ) -> tuple[list[ExecuTorchCandidate], list[str]]:
    """`executorch_forms` for a ``Quantize`` deployment (``config`` None: a float model, its fp32 program):
    nothing unless the target runtime is ``auto`` or ``executorch``; nothing and a note when ExecuTorch is
    not installed (a `BadInputError` when the target runtime is ``executorch``)."""
    from modelpress.measure.executorch_runtime import INSTALL_HINT, executorch_available, require_executorch

    if ctx.target.runtime not in ("auto", "executorch") or ctx.task is None:
        return [], []
    if not executorch_available():
        if ctx.target.runtime == "executorch":
            require_executorch("runtime executorch")
        return [], [f"ExecuTorch candidates skipped: ExecuTorch is not installed ({INSTALL_HINT})"]
    return executorch_forms(model, ctx, tmp, config)


def ship_executorch(candidate: ExecuTorchCandidate, onnx_path: Path) -> Path:
    """Write the winner as ``model.pte`` beside ``onnx_path``; returns its path."""
    dst = Path(onnx_path).with_suffix(".pte")
    shutil.copyfile(candidate.path, dst)
    return dst
