"""What NNCF does differently on MiniLM int8 in OpenVINO, one change at a time (an ablation, not a deployment).

modelpress's ``static-matmul`` graph (`modelpress.quantization.onnx_static_qdq`) and NNCF's quantized IR
run the same OpenVINO int8 kernels. NNCF's graph differs in two ways that its per-layer profile shows
(docs/bench-runtimes.md): the 12 attention matmuls (``Q·Kᵀ``, ``softmax·V``) read int8 inputs, and every
activation grid is symmetric (zero point 0; modelpress's are asymmetric uint8, like onnxruntime's).
This section adds each to modelpress's graph and times all four beside NNCF, interleaved:

- ``+ int8 attention``: Q/DQ on both inputs of every activation × activation MatMul, ranges from
  onnxruntime runs of the graph on the task's calibration split (min / max over 128 examples): int8 with
  zero point 0 for signed tensors (queries, keys, values), uint8 with zero point 0 for the softmax output.
- ``symmetric``: each of modelpress's uint8 input grids ``[(0 − zp)·s, (255 − zp)·s]`` replaced by the
  int8 grid with zero point 0 that covers the same range.

These graphs exist only here: the simulation does not quantize attention, so the deploy step does not
offer them (their fidelity would not be the simulation's).

Run: ``BENCH_RUNTIMES_ROWS=minilm-ablation python -m benchmarks.bench_runtimes``.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

from modelpress.artifact.onnx import export_onnx
from modelpress.context import DeployTarget, StepContext
from modelpress.quantization import Quantize, apply_quantize
from modelpress.quantization.onnx_rewrite import match_layers
from modelpress.quantization.onnx_static_qdq import to_static_qdq
from modelpress.tasks import get
from modelpress.tasks.task import Split

__all__ = ["minilm_ablation", "symmetric_inputs", "with_int8_attention"]

_CALIBRATION = 128  # examples whose activation ranges set the attention grids


def _activation_matmuls(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """MatMul nodes neither of whose inputs is a weight (an initializer, or an initializer behind a DQ)."""
    inits = {i.name for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}

    def weight(name: str) -> bool:
        p = producer.get(name)
        return name in inits or (p is not None and p.op_type == "DequantizeLinear" and p.input[0] in inits)

    return [n for n in model.graph.node if n.op_type == "MatMul" and not any(weight(i) for i in n.input)]


def _ranges(model: onnx.ModelProto, names: list[str], calibration: Split) -> dict[str, tuple[float, float]]:
    """Min and max of each tensor ``names`` over the first `_CALIBRATION` calibration examples (onnxruntime)."""
    probe = copy.deepcopy(model)
    probe.graph.output.extend(helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in names)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    sess = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feeds = [i.name for i in sess.get_inputs()]
    lo, hi = dict.fromkeys(names, 0.0), dict.fromkeys(names, 0.0)
    for start in range(0, min(_CALIBRATION, len(calibration)), 16):
        part = {f: t[start : start + 16].numpy() for f, t in zip(feeds, calibration.inputs, strict=True)}
        for n, out in zip(names, sess.run(names, part), strict=True):
            lo[n], hi[n] = min(lo[n], float(out.min())), max(hi[n], float(out.max()))
    return {n: (lo[n], hi[n]) for n in names}


def _qdq(name: str, base: str, scale: float, zero: np.ndarray
         ) -> tuple[list[onnx.TensorProto], list[onnx.NodeProto]]:
    """Initializers and the QuantizeLinear → DequantizeLinear pair that round ``name`` to one grid."""
    consts = [numpy_helper.from_array(np.array(scale, np.float32), f"{base}_scale"),
              numpy_helper.from_array(zero, f"{base}_zero_point")]
    args = [f"{base}_scale", f"{base}_zero_point"]
    return consts, [helper.make_node("QuantizeLinear", [name, *args], [f"{base}_q"], name=f"{base}_Q"),
                    helper.make_node("DequantizeLinear", [f"{base}_q", *args], [f"{base}_dq"], name=f"{base}_DQ")]


def with_int8_attention(model: onnx.ModelProto, calibration: Split) -> tuple[onnx.ModelProto, int]:
    """A copy of ``model`` whose activation × activation MatMuls read Q/DQ-rounded inputs (see the module
    docstring), and how many MatMuls that was."""
    out = copy.deepcopy(model)
    matmuls = _activation_matmuls(out)
    ranges = _ranges(out, sorted({i for n in matmuls for i in n.input}), calibration)
    targets = {n.name for n in matmuls}
    nodes, done = [], {}
    for node in out.graph.node:
        if node.name in targets:
            for j, name in enumerate(list(node.input)):
                if name not in done:
                    lo, hi = ranges[name]
                    unsigned = lo >= 0
                    scale = max(hi / 255 if unsigned else max(-lo, hi) / 127, 1e-8)
                    zero = np.array(0, np.uint8 if unsigned else np.int8)
                    consts, pair = _qdq(name, f"{name}_attn{len(done)}", scale, zero)
                    out.graph.initializer.extend(consts)
                    nodes += pair
                    done[name] = pair[1].output[0]
                node.input[j] = done[name]
        nodes.append(node)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    return out, len(matmuls)


def symmetric_inputs(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """A copy of ``model`` whose uint8 activation grids with a zero point ≠ 0 become the int8 grid with zero
    point 0 covering the same range, and how many grids changed."""
    out = copy.deepcopy(model)
    inits = {i.name: i for i in out.graph.initializer}
    changed = 0
    for node in out.graph.node:
        if node.op_type != "QuantizeLinear" or node.input[2] not in inits:
            continue
        zp = numpy_helper.to_array(inits[node.input[2]])
        if zp.dtype != np.uint8 or zp.ndim or int(zp) == 0:
            continue
        s = float(numpy_helper.to_array(inits[node.input[1]]))
        lo, hi = -int(zp) * s, (255 - int(zp)) * s
        scale = np.array(max(-lo, hi) / 127, np.float32)
        inits[node.input[1]].CopyFrom(numpy_helper.from_array(scale, node.input[1]))
        inits[node.input[2]].CopyFrom(numpy_helper.from_array(np.array(0, np.int8), node.input[2]))
        changed += 1
    return out, changed


def minilm_ablation(tmp: Path) -> list[str]:
    """The section: modelpress's static-matmul graph, each NNCF difference added, and NNCF, timed together."""
    from benchmarks.bench_runtimes import _nncf, _ov_candidates, _table, fp32_references
    from modelpress.measure import openvino_runtime as ovr

    task = get("bbc-news")
    fp32 = task.model().eval()
    ex = task.example_inputs
    ctx = StepContext(task=task, progress=False, target=DeployTarget(runtime="onnxruntime"))
    q = copy.deepcopy(fp32)
    apply_quantize(q, Quantize(mode="int8-static"), ctx)
    src = onnx.load(str(export_onnx(q, ex, tmp / "static_sim.onnx")))
    base, _ = to_static_qdq(src, match_layers(src, q))
    attn, n_attn = with_int8_attention(base, task.calibration)
    sym, n_sym = symmetric_inputs(base)
    both, _ = with_int8_attention(sym, task.calibration)
    hints = ("f32", *ovr.sixteen_bit_precisions())
    cands = fp32_references(fp32, export_onnx(fp32, ex, tmp / "fp32.onnx"))
    for key, graph, label in (("base", base, "modelpress static-matmul (as deployed)"),
                              ("attn", attn, "+ int8 attention matmuls"),
                              ("sym", sym, "symmetric activation grids"),
                              ("both", both, "symmetric + int8 attention (NNCF's scheme)")):
        onnx.save(graph, str(tmp / f"{key}.onnx"))
        cands += _ov_candidates(ovr.to_ir(tmp / f"{key}.onnx", tmp / f"{key}.xml"), label, hints)
    peers, why = _nncf(ovr.to_ir(tmp / "fp32.onnx", tmp / "fp32.xml"), task, tmp / "nncf.xml", True)
    cands += peers
    m: dict = {}
    label = "batch 1 × 128"
    rows = _table(task, cands, [(label, ex)], m)
    lat = m["latency"][label]
    best = min((c.name for c in peers), key=lat.get, default=None)
    notes = [why] if why else []
    notes.append(f"{n_attn} attention matmuls quantized; {n_sym} activation grids made symmetric")
    if best is not None:
        notes += [f"{c.name} / fastest NNCF ({best}): {lat[c.name] / lat[best]:.3f}×" for c in cands[2:]
                  if c.name not in {p.name for p in peers}]
    title = "## MiniLM int8 in OpenVINO: what NNCF does differently (ablation, batch 1 × 128 tokens, 1 thread)"
    return [title, "",
            ("`BENCH_RUNTIMES_ROWS=minilm-ablation python -m benchmarks.bench_runtimes` — see "
             "`benchmarks/runtimes_ablation.py`: modelpress's deployed graph, with NNCF's two differences added "
             "one at a time, timed interleaved beside NNCF."), "", *rows, "", *[f"- {n}" for n in notes],
            f"- load average when the section finished: {os.getloadavg()[0]:.2f}", ""]
