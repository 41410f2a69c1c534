"""Deployment: rewrite the exported fp32 ONNX file into the integer form that onnxruntime runs best here.

Why candidates are measured instead of one fixed format (DESIGN §5, §8b): int8 speed and accuracy in
onnxruntime depend on the CPU's kernels. On AVX2 without VNNI, u8×s8 products are summed pairwise in
16 bits and saturate (255 × 127 × 2 > 32767), so a format that is exact on one CPU loses points on
another; reduce-range (7-bit) weights avoid the saturation but cost precision, which convs tolerate
(LeNet-5: 1.2 → 0.2 points lost) and MiniLM does not (embedding cosine 0.991 → 0.85); per-tensor
weight scales lose more than per-channel ones on MiniLM (0.958 vs 0.991); static QDQ with int8/int8
types does not fuse fully and runs slower than fp32. So each mode builds the candidates that can be
right, with onnxruntime's own quantizers (``quantize_dynamic``, ``quantize_static`` with a
CalibrationDataReader over the task's calibration split) or, for weight-only n-bit, MatMulNBits written
from our own codes; every candidate runs in onnxruntime on the calibration split and at batch 1; the
fastest one whose metric stays within ``deploy_tolerance`` of the PyTorch simulation is kept.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from torch import Tensor, nn

from modelpress.errors import CompressionError
from modelpress.quantization.config import Quantize
from modelpress.quantization.modules import _Quantized
from modelpress.quantization.onnx_rewrite import Matched, match_layers, to_fp16_weights, to_matmul_nbits
from modelpress.tasks.task import Split, Task

__all__ = ["CalibrationReader", "build_candidate", "candidates_for", "choose"]

_WEIGHTED = ("MatMul", "Gemm", "Conv")
_NOISE = 0.03  # relative latency difference treated as a tie
# The float graph (no rewrite) must beat every accurate quantized candidate by this much to be kept: the
# user asked for a quantized model, and on small models batch-1 latencies of int8 and fp32 lie so close
# that a 3% margin let timing noise flip the deployed file between 1× and 3.8× smaller from run to run.
_FLOAT_MARGIN = 0.10
_NP = {onnx.TensorProto.FLOAT: np.float32, onnx.TensorProto.INT64: np.int64, onnx.TensorProto.INT32: np.int32}


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence onnxruntime's quantizer warnings (it logs 'consider pre-processing' on the root logger)."""
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


class CalibrationReader:
    """An onnxruntime ``CalibrationDataReader`` over a `Split`: feeds batches of 32 as ``input_i``."""

    def __init__(self, model: onnx.ModelProto, split: Split, batch_size: int = 32) -> None:
        from onnxruntime.quantization import CalibrationDataReader

        init_names = {t.name for t in model.graph.initializer}
        self._inputs = [(i.name, _NP.get(i.type.tensor_type.elem_type, np.float32))
                        for i in model.graph.input if i.name not in init_names]
        self._batches = [inp for inp, _ in split.batches(batch_size)]
        self._it = iter(self._batches)
        # onnxruntime checks isinstance(reader, CalibrationDataReader): register as a virtual subclass.
        CalibrationDataReader.register(type(self))

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._it, None)
        if batch is None:
            return None
        return {n: t.numpy().astype(dt) for (n, dt), t in zip(self._inputs, batch, strict=True)}

    def rewind(self) -> None:
        self._it = iter(self._batches)


def candidates_for(config: Quantize, matched: list[Matched], has_conv: bool) -> list[str]:
    """The deployment formats worth measuring for this config (``float`` always, as the fallback)."""
    if config.deploy != "auto":
        return [config.deploy] if config.deploy == "float" else [config.deploy, "float"]
    if config.weight_bits is None:
        return ["fp16", "float"]
    acts = config.activations
    if acts == "dynamic":
        return ["dynamic", "float"]
    if acts == "static":
        # convs: u8 activations × s8 per-channel weights, with and without reduce-range;
        # matmul-heavy graphs: static QDQ does not fuse well here, dynamic int8 does (DESIGN §8b).
        out = ["static-reduce-range", "static"]
        if any(m.op_type == "MatMul" for m in matched):
            out.append("dynamic")
        return [*out, "float"]
    # weight-only: MatMulNBits (fp32 compute and int8 compute), and int8 static for conv models
    out = ["nbits", "nbits-int8-compute"]
    if has_conv:
        out.append("static-reduce-range")
    return [*out, "float"]


def _static_overrides(model: onnx.ModelProto, matched: list[Matched]) -> dict[str, list[dict]]:
    """The PyTorch simulation's calibrated input ranges, handed to onnxruntime's quantizer so that the
    deployed activations use the same uint8 grid as the simulation (percentile / MSE observers too)."""
    nodes = {n.name: n for n in model.graph.node}
    out: dict[str, list[dict]] = {}
    for mt in matched:
        m = mt.module
        if isinstance(m, _Quantized) and m.act == "static":
            lo = (0 - m.act_zp) * m.act_scale
            hi = (255 - m.act_zp) * m.act_scale
            out[nodes[mt.node].input[0]] = [{"rmin": np.float32(lo), "rmax": np.float32(hi)}]
    return out


def build_candidate(fmt: str, src: Path, dst: Path, model: onnx.ModelProto, matched: list[Matched],
                    config: Quantize, calibration: Split | None) -> list[str]:
    """Write candidate ``fmt`` of ``src`` to ``dst``; return notes (nodes left float and why)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

    int8_nodes = [m.node for m in matched if isinstance(m.module, _Quantized) and m.op_type != "Gather"]
    per_channel = config.weight_granularity != "tensor"
    if fmt == "float":
        shutil.copyfile(src, dst)
        return []
    if fmt == "fp16":
        dtype = "bfloat16" if config.mode == "bf16" else "float16"
        onnx.save(to_fp16_weights(model, matched, dtype), str(dst))
        return []
    if fmt in ("nbits", "nbits-int8-compute"):
        new, left = to_matmul_nbits(model, matched, accuracy_level=4 if fmt.endswith("compute") else 0)
        onnx.save(new, str(dst))
        return left
    if not int8_nodes:
        # onnxruntime reads an empty node list as "quantize every node": never hand it one
        raise ValueError("no quantized layer was found in the ONNX graph")
    if fmt == "dynamic":
        # s8 weights, no reduce-range: reduce-range collapses MiniLM (cosine 0.85); the Gemm/Conv
        # nodes have no fast dynamic kernel and stay float.
        quantize_dynamic(str(src), str(dst), op_types_to_quantize=["MatMul"], per_channel=per_channel,
                         reduce_range=False, weight_type=QuantType.QInt8, nodes_to_quantize=int8_nodes,
                         extra_options={"MatMulConstBOnly": True})
        return []
    if fmt in ("static", "static-reduce-range"):
        if calibration is None:
            raise ValueError("static quantization needs the task's calibration split")
        # Every op onnxruntime can quantize is included (Relu, pooling, Add ...), so that Q/DQ pairs fuse
        # into QLinear* kernels; layers we keep in float, and activation × activation matmuls (attention),
        # which the simulation does not quantize either, are excluded by name.
        quantize_static(str(src), str(dst), CalibrationReader(model, calibration), quant_format=QuantFormat.QDQ,
                        per_channel=per_channel, reduce_range=fmt.endswith("range"),
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=[n.name for n in model.graph.node if n.op_type in _WEIGHTED
                                          and n.name not in int8_nodes],
                        extra_options={"TensorQuantOverrides": _static_overrides(model, matched),
                                       "ActivationSymmetric": False, "WeightSymmetric": True})
        return []
    raise ValueError(f"unknown deployment format {fmt!r}")


def choose(results: list[dict[str, Any]], ref_metric: float | None, tolerance: float,
           higher_is_better: bool = True) -> tuple[dict[str, Any], str]:
    """Pick the fastest candidate whose metric is within ``tolerance`` of ``ref_metric`` (the PyTorch
    simulation's); if none is, the most accurate. Returns the chosen row and the reason."""
    ok = [r for r in results if "error" not in r]
    if not ok:
        raise CompressionError("no deployment candidate could be built: " + "; ".join(
            f"{r['format']}: {r.get('error')}" for r in results))
    if ref_metric is None or any(r.get("metric") is None for r in ok):
        return ok[0], "first candidate (no task data to measure them on)"

    def loss(r: dict) -> float:
        return (ref_metric - r["metric"]) if higher_is_better else (r["metric"] - ref_metric)

    within = [r for r in ok if loss(r) <= tolerance + 1e-12]
    quantized = [r for r in within if r["format"] != "float"]
    if quantized:
        fastest_quantized = min(r["latency_ms"] for r in quantized)
        within = quantized + [r for r in within if r["format"] == "float"
                              and r["latency_ms"] * (1 + _FLOAT_MARGIN) < fastest_quantized]  # fmt: skip
    if within:
        fastest = min(r["latency_ms"] for r in within)
        # latencies within 3% are timing noise: then the smaller file wins
        near = [r for r in within if r["latency_ms"] <= fastest * (1 + _NOISE)]
        best = min(near, key=lambda r: (r.get("onnx_bytes", 0), r["latency_ms"]))
        return best, (f"fastest of the candidates within {tolerance} of the PyTorch simulation's metric "
                      f"({ref_metric:.4f}) on the calibration split (ties within {_NOISE:.0%} of latency go "
                      f"to the smaller file; the float graph only when {_FLOAT_MARGIN:.0%} faster than every "
                      "quantized one)")
    best = min(ok, key=lambda r: (loss(r), r["latency_ms"]))
    return best, (f"no candidate within {tolerance} of the simulation's metric ({ref_metric:.4f}); "
                  "kept the most accurate")


def measure_candidates(paths: dict[str, Path], task: Task | None, split: Split | None,
                       sim_out: Tensor | None, example: tuple[Tensor, ...] | None) -> list[dict[str, Any]]:
    """Metric on ``split``, agreement with the simulation's outputs and batch-1 latency, per candidate."""
    from modelpress.measure.latency import time_interleaved
    from modelpress.measure.runtime import ort_predict

    rows: list[dict[str, Any]] = []
    predicts: list[Callable] = []
    for name, path in paths.items():
        row: dict[str, Any] = {"format": name, "onnx_bytes": path.stat().st_size}
        try:
            predict = ort_predict(path, threads=1)
            if task is not None and split is not None:
                out = predict(split.inputs)
                row["metric"] = task.metric.on_outputs(out, split)
                if sim_out is not None:
                    row["max_abs_diff_to_simulation"] = float((out.float() - sim_out.float()).abs().max())
            predicts.append(predict)
        except Exception as e:  # noqa: BLE001 - a candidate that onnxruntime refuses is reported, not fatal
            row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
        rows.append(row)
    good = [r for r in rows if "error" not in r]
    if example is not None and predicts:
        lat = time_interleaved(predicts, example, threads=1, warmup=3, runs=15)
        for r, t in zip(good, lat, strict=True):
            r["latency_ms"] = round(t.median_ms, 4)
    else:
        for r in good:
            r["latency_ms"] = 0.0
    return rows


def deploy(onnx_path: Path, model: nn.Module, config: Quantize, task: Task | None,
           split: Split | None, sim_out: Tensor | None) -> dict[str, Any]:
    """Build, measure and choose; overwrite ``onnx_path`` with the chosen form; return report details."""
    onnx_path = Path(onnx_path)
    src = onnx.load(str(onnx_path))
    matched = match_layers(src, model)
    has_conv = any(m.op_type == "Conv" for m in matched)
    formats = candidates_for(config, matched, has_conv)
    if split is None:
        formats = [f for f in formats if not f.startswith("static")] or ["float"]
    details: dict[str, Any] = {"matched_layers": len(matched),
                               "float_nodes": _float_nodes(src, matched)}
    with tempfile.TemporaryDirectory(prefix="modelpress-deploy-") as tmp:
        paths: dict[str, Path] = {}
        notes: dict[str, list[str]] = {}
        errors: dict[str, str] = {}
        for fmt in formats:
            dst = Path(tmp) / f"{fmt}.onnx"
            try:
                with _quiet():
                    notes[fmt] = build_candidate(fmt, onnx_path, dst, src, matched, config, split)
                paths[fmt] = dst
            except Exception as e:  # noqa: BLE001 - reported per candidate
                errors[fmt] = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
        example = tuple(t[:1] for t in split.inputs) if split is not None else None
        rows = measure_candidates(paths, task, split, sim_out, example)
        rows += [{"format": f, "error": e} for f, e in errors.items()]
        ref = task.metric.on_outputs(sim_out, split) if (task and split is not None and sim_out is not None) else None
        forced = [r for r in rows if r["format"] == config.deploy and "error" not in r]
        if forced:
            best, why = forced[0], f"forced by `deploy: {config.deploy}`"
        else:
            best, why = choose(rows, ref, config.deploy_tolerance,
                               task.metric.higher_is_better if task is not None else True)
        shutil.copyfile(paths[best["format"]], onnx_path)
    for r in rows:
        if r["format"] in notes and notes[r["format"]]:
            r["notes"] = notes[r["format"]]
    details.update({"format": best["format"], "why": why, "simulation_metric": ref, "candidates": rows})
    return details


def _float_nodes(model: onnx.ModelProto, matched: list[Matched]) -> list[str]:
    """MatMul / Gemm / Conv nodes with a weight initializer that are not ``matched`` (layers kept float)."""
    done = {m.node for m in matched}
    inits = {t.name for t in model.graph.initializer}
    return [n.name for n in model.graph.node if n.op_type in ("MatMul", "Gemm", "Conv") and n.name not in done
            and len(n.input) > 1 and n.input[1] in inits]
