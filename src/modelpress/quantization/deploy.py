"""Deployment: rewrite the exported fp32 ONNX file into the integer form that onnxruntime runs best here.

Why candidates are measured instead of one fixed format (docs/architecture.md, measured CPU facts): int8
speed and accuracy in onnxruntime depend on the CPU's kernels. On AVX2 without VNNI, u8×s8 products are
summed pairwise in 16 bits and saturate (255 × 127 × 2 > 32767), so a format that is exact on one CPU
loses points on another; reduce-range (7-bit) weights avoid the saturation but cost precision, which convs
tolerate (LeNet-5: 1.2 → 0.2 points lost) and MiniLM does not (embedding cosine 0.991 → 0.85); per-tensor
weight scales lose more than per-channel ones on MiniLM (0.958 vs 0.991); static QDQ with int8/int8
types does not fuse fully and runs slower than fp32; dynamic ``ConvInteger`` ran 2.5× (LeNet-5) to 8×
(resnet-s) slower than float convs on an AVX-512 VNNI EPYC. So each mode builds the candidates that can
be right, with onnxruntime's own quantizers (``quantize_dynamic``, ``quantize_static`` with a
CalibrationDataReader over the task's calibration split) or, for weight-only n-bit, MatMulNBits written
from our own codes.

Every candidate's graph is checked against what its name promises (`expected_layers`; a candidate whose
integer layers are missing is rejected, never shipped under a wrong label), then
`modelpress.measure.choose.choose` runs them on held-out examples, compares their outputs with the fp32
reference model's (fidelity) and times them interleaved in the deployment setting. The label written to
the report is `modelpress.measure.onnx_graph.onnx_format` of the file shipped.
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from torch import Tensor, nn

from modelpress.context import StepContext
from modelpress.errors import CompressionError
from modelpress.quantization.config import Quantize
from modelpress.quantization.deploy_executorch import executorch_candidates, ship_executorch
from modelpress.quantization.deploy_openvino import OPENVINO_ONLY, openvino_candidates, ship_openvino
from modelpress.quantization.modules import _Half, _Quantized
from modelpress.quantization.onnx_gather import to_gather_block_quantized
from modelpress.quantization.onnx_rewrite import (
    Matched,
    gemm_to_matmul,
    match_layers,
    to_fp16_weights,
    to_matmul_nbits,
)
from modelpress.quantization.onnx_static_qdq import to_static_qdq
from modelpress.tasks.task import Split

__all__ = ["CalibrationReader", "build_candidate", "candidates_for", "check_candidate", "deploy_onnx",
           "expected_layers", "requested_format"]

_WEIGHTED = ("MatMul", "Gemm", "Conv")
_NP = {onnx.TensorProto.FLOAT: np.float32, onnx.TensorProto.INT64: np.int64, onnx.TensorProto.INT32: np.int32}
_HOLDOUT = 512  # held-out examples the candidates are judged on: agreement resolves 0.2%
# On training examples top-1 agreement is near 1.0 for every int8 form, so the output noise decides too: a
# deployed form's SQNR to the fp32 model may be at most 12 dB (two bits) below the PyTorch model's.
# Measured (docs/bench-deploy.md): onnxruntime's static int8 requantizes activations the simulation does
# not, 7-10 dB below it on LeNet at 0.1 points of test accuracy; MiniLM's static int8 fell 14 dB below it
# with 2% of answers changed. A 6 dB slack rejected LeNet-5's static int8 and shipped the float graph.
_SQNR_SLACK_DB = 12.0
_EMBEDDING_NOTE = "embedding kept fp32: "


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
    """The deployment formats worth measuring for this config (``float`` always, as the fallback).

    ``dynamic`` quantizes every matched layer (MatMulInteger, ConvInteger); ``dynamic-matmul`` only the
    Linear ones, for conv models where the integer convs may be slower than float ones."""
    if config.deploy != "auto":
        return [config.deploy] if config.deploy == "float" else [config.deploy, "float"]
    if config.weight_bits is None:
        return ["fp16", "float"]
    acts = config.activations
    linear = any(m.op_type in ("MatMul", "Gemm") and isinstance(m.module, _Quantized) for m in matched)
    if acts == "dynamic":
        return ["dynamic", *(["dynamic-matmul"] if has_conv and linear else []), "float"]
    if acts == "static":
        # convs: u8 activations × s8 per-channel weights, with and without reduce-range;
        # matmul-only graphs: onnxruntime's static QDQ does not fuse well here, dynamic int8 does; OpenVINO
        # gets the static graph in the simulation's scope (static-matmul, OpenVINO only).
        out = ["static-reduce-range", "static"]
        if linear and not has_conv:
            out += ["dynamic", "static-matmul"]
        return [*out, "float"]
    # weight-only: MatMulNBits (fp32 compute and int8 compute), and int8 static for conv models. For
    # matmul-only models also the 4-bit grid's values as int8 per-channel weights with activations
    # quantized per call (MatMulInteger): measured on an AVX-512 VNNI EPYC at 128 × 384 × 1536, MatMulNBits
    # ran at fp32 MatMul speed (0.88 ms both; 0.72 ms with int8 compute at block 128), so a CPU may run
    # the 4-bit model fastest through the int8 kernels; the chooser measures it and reports the label.
    out = ["nbits", "nbits-int8-compute"]
    if has_conv:
        out.append("static-reduce-range")
    elif linear:
        out.append("dynamic")
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
        new, emb_left = to_gather_block_quantized(new, matched)
        onnx.save(new, str(dst))
        return left + [f"{_EMBEDDING_NOTE}{e}" for e in emb_left]
    if not int8_nodes:
        # onnxruntime reads an empty node list as "quantize every node": never hand it one
        raise ValueError("no quantized layer was found in the ONNX graph")
    if fmt in ("dynamic", "dynamic-matmul"):
        # s8 weights, no reduce-range: reduce-range collapses MiniLM (cosine 0.85). Gemm nodes become
        # MatMul + Add first: handed Gemm names, onnxruntime's quantizer quantizes nothing.
        ops = ["MatMul"] if fmt == "dynamic-matmul" else ["MatMul", "Conv"]
        new, renamed = gemm_to_matmul(model, matched)
        nodes = [m.node for m in renamed if isinstance(m.module, _Quantized) and m.op_type in ops]
        if not nodes:
            raise ValueError(f"no quantized {' or '.join(ops)} layer was found in the ONNX graph")
        staged = dst.with_suffix(".matmul.onnx")
        onnx.save(new, str(staged))
        quantize_dynamic(str(staged), str(dst), op_types_to_quantize=ops, per_channel=per_channel,
                         reduce_range=False, weight_type=QuantType.QInt8, nodes_to_quantize=nodes,
                         extra_options={"MatMulConstBOnly": True})
        staged.unlink()
        return _quantize_gathers(dst, matched)
    if fmt == "static-matmul":  # OpenVINO only: the simulation's scope, from its own codes and ranges
        new, left = to_static_qdq(model, matched)
        onnx.save(new, str(dst))
        return left
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




def _quantize_gathers(path: Path, matched: list[Matched]) -> list[str]:
    """Rewrite the quantized embeddings of the onnxruntime-only candidate at ``path`` as
    GatherBlockQuantized (in place); notes for those left fp32. Static QDQ candidates keep fp32 tables:
    OpenVINO converts those graphs and does not read the contrib op."""
    new, left = to_gather_block_quantized(onnx.load(str(path)), matched)
    onnx.save(new, str(path))
    return [f"{_EMBEDDING_NOTE}{e}" for e in left]


def requested_format(config: Quantize) -> str:
    """The `onnx_format` label the user's config asks for (``int8-dynamic``, ``int4-weight``, ``fp16`` ...)."""
    if config.weight_bits is None:
        return "bf16" if config.mode == "bf16" else "fp16"
    acts = config.activations
    return f"int8-{acts}" if acts != "none" else f"int{config.weight_bits}-weight"


def expected_layers(fmt: str, matched: list[Matched], config: Quantize, notes: list[str]) -> dict[str, int]:
    """How many weighted layers of each kind (see `modelpress.measure.onnx_graph`) candidate ``fmt`` must
    hold: the promise its name makes, checked against its graph by `check_candidate`. ``notes``: the
    layers `build_candidate` reported left as they were."""
    weighted = [m for m in matched if m.op_type in _WEIGHTED]
    quantized = [m for m in weighted if isinstance(m.module, _Quantized)]
    if fmt == "float":
        return {}
    if fmt == "fp16":
        half = {m.weight for m in weighted if isinstance(m.module, _Half)}
        return {"bf16" if config.mode == "bf16" else "fp16": len(half)}
    if fmt == "dynamic":
        return {"int8-dynamic": len(quantized)}
    if fmt == "dynamic-matmul":
        return {"int8-dynamic": sum(m.op_type != "Conv" for m in quantized)}
    if fmt == "static-matmul":
        return {"int8-static": len(quantized) - sum(not n.startswith("embedding kept") for n in notes)}
    if fmt.startswith("static"):
        return {"int8-static": len(quantized)}
    if fmt.startswith("nbits"):
        linear = [m for m in quantized if m.op_type != "Conv" and m.module.meta["kind"] == "linear"]
        left = [n for n in notes if not n.startswith(_EMBEDDING_NOTE)]
        return {f"int{config.weight_bits}-weight": len(linear) - len(left)}
    raise ValueError(f"unknown deployment format {fmt!r}")


def check_candidate(fmt: str, path: Path, expected: dict[str, int]) -> str:
    """The graph-derived label of candidate ``fmt`` at ``path``; raises `CompressionError` unless its graph
    holds exactly the ``expected`` number of layers of each kind (and at least one for a quantized form)."""
    from modelpress.measure.onnx_graph import layer_formats, onnx_format

    got = Counter(lf.kind for lf in layer_formats(path))
    wrong = {k: (n, got.get(k, 0)) for k, n in expected.items() if got.get(k, 0) != n}
    if wrong or (fmt != "float" and not any(expected.values())):
        found = ", ".join(f"{k} {n}" for k, n in sorted(got.items())) or "no weighted layer"
        want = ", ".join(f"{k} {n}" for k, n in expected.items()) or "at least one quantized layer"
        raise CompressionError(f"graph check: candidate `{fmt}` should hold {want}; its graph holds {found}")
    return onnx_format(path)


def _build_all(formats: list[str], src_path: Path, tmp: Path, src: onnx.ModelProto, matched: list[Matched],
               config: Quantize, calibration: Split | None) -> tuple[dict[str, Path], dict[str, dict], dict[str, str]]:
    """Build and graph-check each format: ``(paths, info per candidate, errors per rejected candidate)``."""
    from modelpress.measure.onnx_size import onnx_bytes

    paths: dict[str, Path] = {}
    info: dict[str, dict] = {}
    errors: dict[str, str] = {}
    for fmt in formats:
        dst = tmp / f"{fmt}.onnx"
        try:
            with _quiet():
                notes = build_candidate(fmt, src_path, dst, src, matched, config, calibration)
            label = check_candidate(fmt, dst, expected_layers(fmt, matched, config, notes))
        except Exception as e:  # noqa: BLE001 - a candidate that cannot be built is reported, not fatal
            text = str(e).strip().splitlines()
            errors[fmt] = f"{type(e).__name__}: {text[0][:300] if text else ''}"
            continue
        paths[fmt] = dst
        info[fmt] = {"format": fmt, "label": label, "bytes": onnx_bytes(dst)} | ({"notes": notes} if notes else {})
    return paths, info, errors


def _judging_data(model: nn.Module, ctx: StepContext) -> tuple[Split, Tensor, Tensor, str]:
    """Held-out examples, the fp32 reference's outputs on them, the PyTorch model's, and what the
    reference is."""
    from modelpress.measure.choose import holdout_split
    from modelpress.tasks.train import torch_predict

    holdout = holdout_split(ctx.task, _HOLDOUT, seed=ctx.seed)
    sim_out = torch_predict(model, batch_size=64)(holdout.inputs)
    if ctx.reference is None:
        return holdout, sim_out, sim_out, "the PyTorch model being deployed (no fp32 reference was given)"
    ref_out = torch_predict(ctx.reference, batch_size=64)(holdout.inputs)
    return holdout, ref_out, sim_out, "the fp32 model the recipe started from"


def _choose(paths: dict[str, Path], info: dict[str, dict], model: nn.Module, config: Quantize,
            ctx: StepContext, extra: list | None = None) -> tuple[str, str, list[dict], dict[str, Any]]:
    """Run `modelpress.measure.choose.choose` over the built candidates: ``(winner, why, rows, judged)``.
    ``extra``: OpenVINO and ExecuTorch candidates (`modelpress.quantization.deploy_openvino`,
    `deploy_executorch`), judged with them; with target runtime ``openvino`` / ``executorch`` they are
    the only ones."""
    from modelpress.measure._model import batch_of
    from modelpress.measure.choose import HOLDOUT_NOTE, Candidate, Floor, choose
    from modelpress.measure.fidelity import fidelity
    from modelpress.measure.runtime import ort_predict

    threads = ctx.target.threads
    if ctx.task is None:  # nothing to run them on: the first candidate whose graph checked out
        first = next(iter(paths))
        return first, "first candidate whose graph holds its layers (no task data to measure them on)", \
            [info[f] for f in paths], {}
    holdout, ref_out, sim_out, reference = _judging_data(model, ctx)
    sim = fidelity(sim_out, ref_out)
    sqnr = sim.sqnr_db - _SQNR_SLACK_DB if math.isfinite(sim.sqnr_db) else None
    floor = (Floor(agreement=sim.agreement - config.deploy_tolerance, sqnr_db=sqnr) if sim.agreement is not None
             else Floor(cosine=sim.cosine - config.deploy_tolerance, sqnr_db=sqnr))
    candidates = [Candidate(f, ort_predict(p, threads=threads), info[f]["bytes"], baseline=f == "float",
                            info={"runtime": "onnxruntime"} | {k: v for k, v in info[f].items() if k != "bytes"})
                  for f, p in paths.items() if f not in OPENVINO_ONLY] \
        if ctx.target.runtime not in ("openvino", "executorch") else []
    candidates += [Candidate(c.name, c.predict, c.bytes, baseline=c.baseline, info=c.info) for c in extra or []]
    choice = choose(candidates, holdout.inputs, ref_out, floor=floor, threads=threads,
                    timing_inputs=batch_of(holdout, ctx.target.batch_size), rewarm=bool(extra))
    judged = {"judged_on": {"split": holdout.name, "examples": len(holdout), "what": HOLDOUT_NOTE},
              "reference": reference, "simulation_fidelity": sim.to_dict(),
              "floor": f"{floor.describe()} (the PyTorch model's own agreement minus deploy_tolerance "
                       f"{config.deploy_tolerance}; its SQNR minus {_SQNR_SLACK_DB:g} dB)",
              "timing": {"threads": threads, "batch_size": ctx.target.batch_size}}
    winner, why = choice.winner.name, choice.why
    forced = config.deploy if config.deploy != "auto" else None
    if forced is not None and any(r.name == forced and r.error is None for r in choice.table):
        winner, why = forced, f"forced by `deploy: {forced}` (measured: {choice.why})"
    return winner, why, [r.to_dict() for r in choice.table], judged


def deploy_onnx(onnx_path: Path, model: nn.Module, config: Quantize, ctx: StepContext) -> dict[str, Any]:
    """Build the candidates for ``config``, check each against its graph, choose (fidelity to
    ``ctx.reference`` on held-out training data, latency in ``ctx.target``), overwrite ``onnx_path`` with
    the winner. Returns the report details: ``format`` (derived from the shipped graph), ``candidate``,
    ``why``, ``candidates`` (name, label, bytes, fidelity, latency), ``layers`` and ``ops`` of the shipped
    file. Raises `CompressionError` when no candidate can be built or run."""
    from modelpress.measure.onnx_graph import layer_formats, onnx_format, op_counts
    from modelpress.measure.openvino_runtime import openvino_available
    from modelpress.quantization.ptq import calibration_split

    onnx_path = Path(onnx_path)
    src = onnx.load(str(onnx_path))
    matched = match_layers(src, model)
    has_conv = any(m.op_type == "Conv" for m in matched)
    formats = candidates_for(config, matched, has_conv)
    calibration = calibration_split(ctx.task.calibration, config.calibration_size) if ctx.task else None
    if calibration is None:
        formats = [f for f in formats if not f.startswith("static")] or ["float"]
    if ctx.target.runtime in ("onnxruntime", "executorch") or not openvino_available():
        formats = [f for f in formats if f not in OPENVINO_ONLY]
    details: dict[str, Any] = {"requested": requested_format(config), "matched_layers": len(matched),
                               "float_nodes": _float_nodes(src, matched)}
    with tempfile.TemporaryDirectory(prefix="modelpress-deploy-") as tmp:
        paths, info, errors = _build_all(formats, onnx_path, Path(tmp), src, matched, config, calibration)
        if not paths:
            raise CompressionError("no deployment candidate could be built: " + "; ".join(
                f"{f}: {e}" for f, e in errors.items()))
        ov, ov_notes = openvino_candidates(paths, src, matched, config, ctx, Path(tmp))
        if ctx.target.runtime == "openvino" and not ov:
            raise CompressionError("no OpenVINO candidate could be built: " + "; ".join(ov_notes))
        et, et_notes = executorch_candidates(model, config, ctx, Path(tmp))
        if ctx.target.runtime == "executorch" and not et:
            raise CompressionError("no ExecuTorch candidate could be built: " + "; ".join(et_notes))
        winner, why, rows, judged = _choose(paths, info, model, config, ctx, [*ov, *et])
        shipped_ov = next((c for c in ov if c.name == winner), None)
        shipped_et = next((c for c in et if c.name == winner), None)
        if shipped_ov is not None:
            ship_openvino(shipped_ov, onnx_path)
        elif shipped_et is not None:
            ship_executorch(shipped_et, onnx_path)
        else:
            shutil.copyfile(paths[winner], onnx_path)
    rows += [{"name": f, "format": f, "error": e} for f, e in errors.items()]
    label = onnx_format(onnx_path) if shipped_ov is None else shipped_ov.info["label"]
    label = shipped_et.info["label"] if shipped_et is not None else label
    if ov_notes:
        details["openvino_notes"] = ov_notes
    if et_notes:
        details["executorch_notes"] = et_notes
    if shipped_et is not None:
        details["deployed_file"] = onnx_path.with_suffix(".pte").name
        details["executorch"] = {k: shipped_et.info[k] for k in ("ops", "carried")}
    if shipped_ov is not None:
        details["deployed_file"] = onnx_path.with_suffix(".xml").name
        details["executed"] = {"precision": shipped_ov.precision, "layers": shipped_ov.info["executed_layers"]}
    runtime = "openvino" if shipped_ov is not None else "executorch" if shipped_et is not None else "onnxruntime"
    details.update({"runtime": runtime,
                    "format": label, "candidate": winner, "why": why, **judged, "candidates": rows,
                    "layers": dict(Counter(lf.kind for lf in layer_formats(onnx_path))), "ops": op_counts(onnx_path)})
    if label != details["requested"]:
        details["format_note"] = f"shipped {label}, not the requested {details['requested']}: {why}"
    return details


def _float_nodes(model: onnx.ModelProto, matched: list[Matched]) -> list[str]:
    """MatMul / Gemm / Conv nodes with a weight initializer that are not ``matched`` (layers kept float)."""
    done = {m.node for m in matched}
    inits = {t.name for t in model.graph.initializer}
    return [n.name for n in model.graph.node if n.op_type in _WEIGHTED and n.name not in done
            and len(n.input) > 1 and n.input[1] in inits]
