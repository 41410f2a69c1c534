"""OpenVINO candidates of a Quantize deployment, judged by the same chooser as onnxruntime's.

Which OpenVINO forms can be right (measured on an AVX-512 EPYC and an AMX Xeon, docs/bench-runtimes.md):
the float graph in f32 and in each 16-bit precision the CPU executes (bf16 ran MiniLM as fast as
onnxruntime's int8 at cosine 0.99999); the int8 QDQ graphs onnxruntime's static quantizer wrote (OpenVINO
runs them as int8 kernels, so calibrated and QAT ranges carry over); for linear-only models the static
graph in the simulation's own scope (``static-matmul``: Q/DQ only into the quantized layers, softmax /
layer norm / residual adds left float - onnxruntime's graph rounds those too, MiniLM cosine 0.965); and
modelpress's 8-bit codes as
weight-only ``DequantizeLinear`` (`modelpress.quantization.onnx_weight_dq`), which OpenVINO runs with int8
weights and activations quantized per call. onnxruntime's dynamic graph (MatMulInteger) and MatMulNBits
are not offered: OpenVINO runs the first in f32 and does not read the second.

Every form's executed precisions are read off the compiled model; a form that should run int8 and does
not is rejected, never shipped under that label.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from modelpress.context import StepContext
from modelpress.errors import CompressionError
from modelpress.quantization.config import Quantize
from modelpress.quantization.onnx_rewrite import Matched
from modelpress.quantization.onnx_weight_dq import to_weight_dequantize

__all__ = ["OPENVINO_ONLY", "OpenVINOCandidate", "openvino_candidates", "ship_openvino"]

_KIND = {"f32": "float32", "bf16": "bf16", "f16": "fp16"}
# Formats `modelpress.quantization.deploy.build_candidate` writes for OpenVINO alone: static-matmul (Q/DQ
# on the quantized layers' inputs only, `modelpress.quantization.onnx_static_qdq`). Measured on MiniLM
# bbc-news, 1 thread, AVX-512 VNNI EPYC (docs/bench-runtimes.md): OpenVINO ran it at NNCF's int8 speed
# (logit cosine 0.99865); onnxruntime ran the same graph about 1.4x slower than OpenVINO, at its dynamic
# int8's speed, so onnxruntime does not spend judging time on it.
OPENVINO_ONLY = ("static-matmul",)


@dataclass(frozen=True)
class OpenVINOCandidate:
    """One OpenVINO form: its name, the ONNX graph its IR comes from, the precision hint, the predict,
    IR bytes, whether it is the unchanged form (``baseline``) and report columns (``info``)."""

    name: str
    source: Path
    precision: str
    predict: Any
    bytes: int
    baseline: bool
    info: dict[str, Any]


def _sources(paths: dict[str, Path], src: onnx.ModelProto, matched: list[Matched], config: Quantize,
             tmp: Path, notes: list[str]) -> dict[str, Path]:
    """ONNX graphs worth converting: the float graph, static QDQ graphs, and 8-bit codes as weight-only DQ."""
    out = {f: p for f, p in paths.items() if f == "float" or f.startswith("static")}
    if "static" in out:  # reduce-range works around onnxruntime's u8s8 saturation; OpenVINO needs no such form
        out.pop("static-reduce-range", None)
    if config.weight_bits == 8:
        try:
            graph, left = to_weight_dequantize(src, matched)
        except ValueError as e:
            notes.append(f"openvino weight-dq not built: {e}")
        else:
            out["weight-dq"] = tmp / "weight-dq.onnx"
            onnx.save(graph, str(out["weight-dq"]))
            if left:
                notes.append(f"openvino weight-dq left {len(left)} layers float: {'; '.join(left[:3])}")
    return out


def openvino_candidates(paths: dict[str, Path], src: onnx.ModelProto, matched: list[Matched],
                        config: Quantize, ctx: StepContext, tmp: Path) -> tuple[list[OpenVINOCandidate], list[str]]:
    """The OpenVINO forms of the built onnxruntime candidates ``paths`` (format → .onnx) and of the
    weight-only int8 graph, compiled for ``ctx.target.threads``; ``(candidates, notes)``. Nothing when
    ``ctx.target.runtime`` is ``onnxruntime`` or ``executorch``; nothing and a note when OpenVINO is not installed (a
    `BadInputError` when the target runtime is ``openvino``)."""
    from modelpress.measure.openvino_runtime import (
        INSTALL_HINT,
        openvino_available,
        openvino_forms,
        require_openvino,
    )

    if ctx.target.runtime in ("onnxruntime", "executorch"):
        return [], []
    if not openvino_available():
        if ctx.target.runtime == "openvino":
            require_openvino("runtime openvino")  # BadInputError: asked for, not installed
        return [], [f"OpenVINO candidates skipped: OpenVINO is not installed ({INSTALL_HINT})"]
    notes: list[str] = []
    out: list[OpenVINOCandidate] = []
    for fmt, path in _sources(paths, src, matched, config, tmp, notes).items():
        try:
            forms, more = openvino_forms(path, tmp / f"ov-{fmt}", threads=ctx.target.threads)
        except CompressionError as e:
            notes.append(f"openvino {fmt}: {e}")
            continue
        notes += more
        for form in forms:
            name = f"openvino {fmt} {form.precision}"
            int8 = form.executed.layers.get("int8", 0)
            if fmt != "float" and not int8:  # the graph check: an int8 form that OpenVINO runs in float
                notes.append(f"{name} rejected: OpenVINO executes it as {form.executed.label}, not int8")
                continue
            kind = (fmt if fmt != "weight-dq" else "int8-weight") if int8 else _KIND[form.precision]
            kind = "int8-static" if kind.startswith("static") else kind
            # the float graph is the unchanged form, except 16-bit compute when the user asked for 16 bits
            baseline = fmt == "float" and (config.weight_bits is not None or form.precision == "f32")
            info = {"runtime": "openvino", "format": fmt, "precision": form.precision, "label": kind,
                    "executed": form.executed.label, "executed_layers": form.executed.layers}
            out.append(OpenVINOCandidate(name, path, form.precision, form.predict, form.bytes, baseline, info))
    return out, notes


def ship_openvino(candidate: OpenVINOCandidate, onnx_path: Path) -> Path:
    """Write the winner: its source graph as ``onnx_path`` and its IR as ``model.xml`` / ``.bin`` beside it,
    with the precision it was chosen for recorded in the IR. Returns the .xml path."""
    import shutil

    from modelpress.measure.openvino_runtime import to_ir

    shutil.copyfile(candidate.source, onnx_path)
    return to_ir(onnx_path, onnx_path.with_suffix(".xml"), precision=candidate.precision)
