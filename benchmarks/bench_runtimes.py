"""Runtimes benchmark (issues 13, 14): the same models in torch, onnxruntime, OpenVINO and ExecuTorch, with
NNCF as a peer.

Run: ``make bench BENCH=runtimes`` (installs the ``[bench]`` extra, nncf), or
``HF_HUB_OFFLINE=1 .venv/bin/python -m benchmarks.run runtimes``. ``BENCH_RUNTIMES_ROWS=minilm``,
``resnet`` or ``et-lenet5`` / ``et-resnet`` / ``et-minilm`` (the ExecuTorch rows) runs one part (the other
sections of the doc are kept). Writes docs/bench-runtimes.md.

Cases: MiniLM on bbc-news (batch 1 × 128 tokens) and resnet-s on Fashion-MNIST (batch 1 and 32), one
thread, every candidate of a case timed interleaved in one process (ratios, not absolute times, are the
result on a shared machine). Candidates:

- torch fp32 (eager) and onnxruntime fp32 (the exported graph);
- onnxruntime int8: modelpress's deployed choice (``Quantize`` + ``deploy_quantize``, ``deploy: auto``;
  int8-dynamic for MiniLM, int8-static for resnet-s);
- OpenVINO fp32 (the same ONNX converted to IR, f32 precision hint) and OpenVINO with each 16-bit hint
  that this CPU executes (read back from the compiled model; a hint it lowers is reported, not timed);
- OpenVINO int8 weights from modelpress's codes (weight-only DequantizeLinear, the int8 model of the
  onnxruntime row): OpenVINO quantizes the activations per call, as the int8-dynamic simulation does;
- OpenVINO int8 from modelpress's static QDQ graph, with the f32 hint and with the 16-bit hint for the
  layers left float: for MiniLM in the simulation's scope (`modelpress.quantization.onnx_static_qdq`:
  Q/DQ only into the quantized layers), for resnet-s ``quantize_static``'s graph with modelpress's ranges;
- MiniLM: modelpress's int8-static deployment with ``--runtime auto`` (every runtime's candidates, the
  normal choice), the shipped file timed; the acceptance line (its latency over the fastest peer's) and
  OpenVINO's per-layer profile of both IRs (`modelpress.measure.openvino_runtime.profile_layers`);
- the peer: NNCF's ``quantize`` (its defaults; ``model_type=TRANSFORMER`` for MiniLM) on the fp32 IR,
  run with OpenVINO's own default precision for this CPU and with every other hint modelpress's forms get
  (same compile settings: 1 thread, 1 stream, LATENCY hint, no pinning).

ExecuTorch rows (the phone runtime; its XNNPACK delegate runs the same kernels on ARM as here), one
section per model, batch 1 (MiniLM 1 × 128): torch fp32, onnxruntime fp32, onnxruntime int8 (modelpress's
deployed choice among onnxruntime's forms), OpenVINO fp32 (f32 hint), ExecuTorch fp32 and ExecuTorch int8
(`modelpress.quantization.executorch_export.export_pte` of the same modelpress-quantized model: its int8
codes, scales and calibrated ranges carried into XNNPACK's quantizer; embeddings as int8 rows).

``minilm-ablation`` (opt-in, `benchmarks.runtimes_ablation`): modelpress's deployed MiniLM graph with each of
NNCF's two differences added (int8 attention matmuls, symmetric activation grids), timed beside NNCF.

Fidelity is to torch fp32 on the test split: mean cosine of the logits per example and top-1 agreement;
accuracy is the task metric on the same split; bytes are the deployed files (.onnx, or .xml + .bin).
"""

from __future__ import annotations

import copy
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch
import torch.nn.functional as F

from modelpress.artifact.onnx import export_onnx
from modelpress.context import DeployTarget, StepContext
from modelpress.measure.cpu import cpu_info
from modelpress.measure.latency import time_interleaved
from modelpress.measure.onnx_size import onnx_bytes
from modelpress.measure.runtime import ort_predict
from modelpress.quantization import Quantize, apply_quantize, deploy_quantize
from modelpress.quantization.onnx_rewrite import match_layers
from modelpress.quantization.onnx_static_qdq import to_static_qdq
from modelpress.quantization.onnx_weight_dq import to_weight_dequantize
from modelpress.tasks import get
from modelpress.tasks.task import Predict, Task
from modelpress.tasks.train import torch_predict

DOC = Path(__file__).resolve().parents[1] / "docs" / "bench-runtimes.md"
COMMAND = "HF_HUB_OFFLINE=1 .venv/bin/python -m benchmarks.run runtimes"


@dataclass
class Candidate:
    """One way to run the model: how, in what it really computes, its predict and its file's bytes."""

    name: str
    runtime: str
    label: str
    predict: Predict
    bytes: int | None


def fp32_references(fp32: torch.nn.Module, onnx_path: Path) -> list[Candidate]:
    """The two rows every table's ratios are taken against: torch eager fp32, then onnxruntime running the
    fp32 export at ``onnx_path``."""
    return [Candidate("torch fp32 (eager)", "torch", "f32", torch_predict(fp32, 256), None),
            Candidate("onnxruntime fp32", "onnxruntime", "f32", ort_predict(onnx_path), onnx_bytes(onnx_path))]


def _ov_candidates(xml: Path, name: str, hints: tuple[str, ...]) -> list[Candidate]:
    """The IR at ``xml`` compiled once per precision hint (one candidate each), labelled as executed."""
    from modelpress.measure import openvino_runtime as ovr

    out = []
    for hint in hints:
        compiled = ovr.compile_openvino(xml, threads=1, precision=hint)
        label = ovr.executed_format(compiled).label
        out.append(Candidate(f"{name}, {hint} hint", "openvino", label, ovr.predict_compiled(compiled),
                             ovr.ir_bytes(xml)))
    return out


def _nncf(xml: Path, task: Task, out: Path, transformer: bool) -> tuple[list[Candidate], str]:
    """NNCF int8 PTQ of the fp32 IR with its defaults (300 calibration examples), run in OpenVINO with the
    CPU plugin's default precision and with every other hint modelpress's OpenVINO forms get (f32, the
    16-bit ones this CPU executes): the same runtime settings, the peer's fastest counts. ([], why) when
    nncf is not installed or fails."""
    try:
        import nncf
    except ImportError:
        return [], "nncf is not installed (`make bench` installs the [bench] extra)"
    import openvino as ov

    from modelpress.measure import openvino_runtime as ovr

    core = ov.Core()
    model = core.read_model(str(xml))
    names = [i.get_any_name() for i in model.inputs]
    items = [tuple(t[i : i + 1] for t in task.calibration.inputs) for i in range(min(300, len(task.calibration)))]
    data = nncf.Dataset(items, lambda x: {n: t.numpy() for n, t in zip(names, x, strict=True)})
    kwargs = {"model_type": nncf.ModelType.TRANSFORMER} if transformer else {}
    try:
        q = nncf.quantize(model, data, subset_size=len(items), **kwargs)
    except Exception as e:  # noqa: BLE001 - a peer that fails is reported, not fatal
        return [], f"nncf.quantize failed: {type(e).__name__}: {str(e)[:200]}"
    ov.save_model(q, str(out), compress_to_fp16=False)
    default = core.get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()
    hints = [default] + [h for h in ("f32", *ovr.sixteen_bit_precisions()) if h != default]
    cands = []
    for hint in hints:
        compiled = ovr.compile_openvino(out, threads=1, precision=hint)
        what = " (OpenVINO's default)" if hint == default else ""
        cands.append(Candidate(f"NNCF int8 + OpenVINO, {hint} hint{what}", "openvino",
                               ovr.executed_format(compiled).label, ovr.predict_compiled(compiled), ovr.ir_bytes(out)))
    return cands, ""


def _deployed_auto(task: Task, fp32: torch.nn.Module, tmp: Path) -> tuple[Candidate, str, Path]:
    """modelpress's int8-static deployment with ``--runtime auto`` (every runtime's candidates, the
    normal choice): the shipped file as a candidate, why it won, and the shipped file's path."""
    from modelpress.measure import openvino_runtime as ovr

    q = copy.deepcopy(fp32)
    cfg = Quantize(mode="int8-static")
    ctx = StepContext(task=task, progress=False, reference=fp32, target=DeployTarget(runtime="auto"))
    apply_quantize(q, cfg, ctx)
    path = export_onnx(q, task.example_inputs, tmp / "auto" / "model.onnx")
    d = deploy_quantize(path, q, cfg, ctx)
    name = f"modelpress deployed, `--runtime auto` int8-static (`{d['candidate']}`)"
    if d["runtime"] == "openvino":
        xml = path.with_suffix(".xml")
        compiled = ovr.compile_openvino(xml, threads=1)  # the precision recorded in the IR
        return (Candidate(name, "openvino", ovr.executed_format(compiled).label, ovr.predict_compiled(compiled),
                          ovr.ir_bytes(xml)), d["why"], xml)
    if d["runtime"] == "executorch":
        from modelpress.measure.executorch_runtime import pte_predict

        pte = path.with_suffix(".pte")
        return Candidate(name, "executorch", d["format"], pte_predict(pte), pte.stat().st_size), d["why"], pte
    return Candidate(name, "onnxruntime", d["format"], ort_predict(path), onnx_bytes(path)), d["why"], path


def _fidelity(out: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    """Mean per-example cosine of the logits and top-1 agreement, against the fp32 reference."""
    cos = float(F.cosine_similarity(out.float(), ref.float(), dim=1).mean())
    return cos, float((out.argmax(1) == ref.argmax(1)).float().mean())


def _candidates(task: Task, fp32: torch.nn.Module, tmp: Path, int8_mode: str,
                transformer: bool) -> tuple[list[Candidate], list[str]]:
    """Every candidate of one model, and notes (what was skipped and why, what deploy chose)."""
    from modelpress.measure import openvino_runtime as ovr

    ex = task.example_inputs
    notes: list[str] = []
    p32 = export_onnx(fp32, ex, tmp / "fp32.onnx")
    cands = fp32_references(fp32, p32)
    # modelpress's deployed int8 (onnxruntime), its own choice of format
    q = copy.deepcopy(fp32)
    cfg = Quantize(mode=int8_mode)
    ctx = StepContext(task=task, progress=False, target=DeployTarget(runtime="onnxruntime"))  # the ORT row
    apply_quantize(q, cfg, ctx)
    p8 = export_onnx(q, ex, tmp / "int8.onnx")
    d = deploy_quantize(p8, q, cfg, ctx)
    chosen = d.get("candidate", d["format"])  # the candidate's name (newer reports label "format" apart)
    cands.append(Candidate(f"onnxruntime int8 (modelpress deployed, `{chosen}`)", "onnxruntime",
                           f"int8 {chosen}", ort_predict(p8), onnx_bytes(p8)))
    notes.append(f"modelpress deploy chose `{chosen}` for {int8_mode}: {d['why']}")
    if not ovr.openvino_available():
        return cands, [*notes, "OpenVINO is not installed: its candidates are skipped"]
    hints16 = ovr.sixteen_bit_precisions()
    x32 = ovr.to_ir(p32, tmp / "fp32.xml")
    for hint in ("bf16", "f16"):
        if hint not in hints16:
            ran = ovr.executed_format(ovr.compile_openvino(x32, precision=hint))
            notes.append(f"OpenVINO {hint} hint not timed: this CPU executes it as {ran.label}")
    cands += _ov_candidates(x32, "OpenVINO fp32 IR", ("f32", *hints16))
    # modelpress's int8 codes as weight-only DequantizeLinear: int8 weights, OpenVINO's per-call activations
    src = onnx.load(str(export_onnx(q, ex, tmp / "int8_sim.onnx")))
    try:
        wdq, left = to_weight_dequantize(src, match_layers(src, q))
        onnx.save(wdq, str(tmp / "wdq.onnx"))
        cands += _ov_candidates(ovr.to_ir(tmp / "wdq.onnx", tmp / "wdq.xml"), "OpenVINO int8 weights "
                                "(modelpress codes, OpenVINO dynamic activations)", ("f32", *hints16))
        if left:
            notes.append(f"weight-only int8 left {len(left)} layers float: {left[:3]}")
    except ValueError as e:
        notes.append(f"weight-only int8 not built: {e}")
    # modelpress's QDQ graph: the deployed file when deploy chose a static format, else built for OpenVINO:
    # for a transformer in the simulation's scope (Q/DQ into the quantized layers only), for a CNN
    # onnxruntime's quantize_static graph (every op quantized, which fuses conv chains)
    if transformer:
        qs = copy.deepcopy(fp32)
        apply_quantize(qs, Quantize(mode="int8-static"), ctx)
        src_s = onnx.load(str(export_onnx(qs, ex, tmp / "static_sim.onnx")))
        qdq_graph, left = to_static_qdq(src_s, match_layers(src_s, qs))
        qdq = tmp / "qdq.onnx"
        onnx.save(qdq_graph, str(qdq))
        name = "OpenVINO int8 (modelpress static QDQ, quantized layers' inputs only)"
        notes += [f"static QDQ left as they were: {'; '.join(left)}"] if left else []
    elif chosen.startswith("static"):
        qdq, name = p8, "OpenVINO int8 (modelpress QDQ)"
    else:
        qs = copy.deepcopy(fp32)
        cfg_s = Quantize(mode="int8-static", deploy="static")
        apply_quantize(qs, cfg_s, ctx)
        qdq, name = export_onnx(qs, ex, tmp / "qdq.onnx"), "OpenVINO int8 (modelpress QDQ)"
        deploy_quantize(qdq, qs, cfg_s, ctx)
    cands += _ov_candidates(ovr.to_ir(qdq, tmp / "qdq.xml"), name, ("f32", *hints16))
    peers, why = _nncf(x32, task, tmp / "nncf.xml", transformer)
    cands += peers
    notes += [why] if why else []
    return cands, notes


def _test_outputs(task: Task, cands: list[Candidate]) -> dict[str, torch.Tensor]:
    """Each candidate's outputs on the whole test split, by name."""
    return {c.name: c.predict(task.test.inputs) for c in cands}


def _table(task: Task, cands: list[Candidate], batches: list[tuple[str, tuple]],
           measured: dict | None = None, outs: dict[str, torch.Tensor] | None = None) -> list[str]:
    """Fidelity on the test split, then latency per batch shape (interleaved), as markdown rows;
    ``measured``, when given, receives ``fidelity`` / ``accuracy`` / ``latency`` by candidate name;
    ``outs``: the candidates' `_test_outputs` where the caller already has them."""
    outs = outs if outs is not None else _test_outputs(task, cands)
    ref = outs[cands[0].name]
    fid = {name: _fidelity(out, ref) for name, out in outs.items()}
    acc = {name: task.metric.on_outputs(out, task.test) for name, out in outs.items()}
    lat = {}
    for label, inputs in batches:
        # rewarm: each timed call follows an untimed one of the same candidate, so no runtime is timed
        # with another runtime's code and data in the caches
        times = time_interleaved([c.predict for c in cands], inputs, threads=1, warmup=5, runs=30, rewarm=True)
        lat[label] = {c.name: t.median_ms for c, t in zip(cands, times, strict=True)}
    if measured is not None:
        measured.update(fidelity=fid, accuracy=acc, latency=lat)
    heads = " | ".join(f"{b} ms | × torch | × ORT fp32" for b, _ in batches)
    lines = [f"| candidate | runtime | executed format | {heads} | logit cosine | top-1 agree | accuracy | bytes |",
             "|---|---|---|" + "---:|---:|---:|" * len(batches) + "---:|---:|---:|---:|"]
    for c in cands:
        cells = []
        for b, _ in batches:
            ms = lat[b][c.name]
            cells.append(f"{ms:.2f} | {ms / lat[b][cands[0].name]:.3f} | {ms / lat[b][cands[1].name]:.3f}")
        size = f"{c.bytes:,}" if c.bytes else "–"
        lines.append(f"| {c.name} | {c.runtime} | {c.label} | {' | '.join(cells)} | {fid[c.name][0]:.5f} "
                     f"| {fid[c.name][1]:.4f} | {acc[c.name]:.4f} | {size} |")
    return lines


def minilm(tmp: Path) -> list[str]:
    task = get("bbc-news")
    fp32 = task.model().eval()
    cands, notes = _candidates(task, fp32, tmp, "int8-dynamic", transformer=True)
    auto, why, shipped = _deployed_auto(task, fp32, tmp)
    cands.append(auto)
    notes.append(f"`--runtime auto` int8-static deploy: {why}")
    m: dict = {}
    label = "batch 1 × 128"
    rows = _table(task, cands, [(label, task.example_inputs)], m)
    notes += _versus_peer(cands, m, label, auto.name)
    notes += _profiles(cands, auto, shipped, tmp / "nncf.xml", task.example_inputs)
    return (["## MiniLM on bbc-news (batch 1 × 128 tokens, 1 thread, timed interleaved)", "", *rows, "",
             *[f"- {n}" for n in notes], f"- load average when the section finished: {os.getloadavg()[0]:.2f}", ""])


def _versus_peer(cands: list[Candidate], m: dict, label: str, ours: str) -> list[str]:
    """The acceptance line: our deployed latency over the fastest peer's in the same run, its cosine and
    accuracy drop."""
    lat = m["latency"][label]
    peers = [c.name for c in cands if c.name.startswith("NNCF")]
    if not peers:
        return []
    best = min(peers, key=lat.get)
    drop = 100 * (m["accuracy"][cands[0].name] - m["accuracy"][ours])
    return [(f"**modelpress deployed / fastest peer ({best}): {lat[ours] / lat[best]:.3f}×** "
            f"({lat[ours]:.2f} vs {lat[best]:.2f} ms); logit cosine {m['fidelity'][ours][0]:.5f}, "
            f"accuracy drop {drop:.2f} points")]


def _profiles(cands: list[Candidate], ours: Candidate, shipped: Path, nncf_xml: Path,
              inputs: tuple) -> list[str]:
    """Where the time goes: OpenVINO's per-layer counters of our shipped IR and of NNCF's, top layer kinds."""
    from modelpress.measure import openvino_runtime as ovr

    if ours.runtime != "openvino" or not nncf_xml.is_file():
        return []
    peer_hint = next(c.name.split(", ")[1].split()[0] for c in cands if c.name.startswith("NNCF"))
    out = []
    for who, xml, hint in (("modelpress", shipped, None), ("NNCF", nncf_xml, peer_hint)):
        prof = ovr.profile_layers(xml, inputs, precision=hint)
        top = ", ".join(f"{k} {v:.2f}" for k, v in list(prof.items())[:8])
        out.append(f"OpenVINO per-layer time of {who}'s IR ({hint or 'its recorded'} hint; ms per call, "
                   f"{sum(prof.values()):.2f} in all): {top}")
    return out


def resnet(tmp: Path) -> list[str]:
    task = get("fashion-mnist")
    fp32 = task.model("resnet-s").eval()  # waits on the cache lock while a background job trains it
    cands, notes = _candidates(task, fp32, tmp, "int8-static", transformer=False)
    batches = [("batch 1", tuple(t[:1] for t in task.test.inputs)),
               ("batch 32", tuple(t[:32] for t in task.test.inputs))]
    rows = _table(task, cands, batches)
    return (["## resnet-s on Fashion-MNIST (batch 1 and 32, 1 thread, timed interleaved)", "", *rows, "",
             *[f"- {n}" for n in notes], f"- load average when the section finished: {os.getloadavg()[0]:.2f}", ""])


def _et_candidates(task: Task, fp32: torch.nn.Module, tmp: Path, int8_mode: str) -> tuple[list[Candidate], list[str]]:
    """torch / onnxruntime fp32 and int8 / OpenVINO fp32 / ExecuTorch fp32 and int8 of one model."""
    from modelpress.measure import openvino_runtime as ovr
    from modelpress.measure.executorch_runtime import executorch_available, pte_predict
    from modelpress.quantization.executorch_export import export_pte

    if not executorch_available():
        return [], ["ExecuTorch is not installed (`make setup` installs the [executorch] extra)"]
    ex, notes = task.example_inputs, []
    q = copy.deepcopy(fp32)
    cfg = Quantize(mode=int8_mode)
    ctx = StepContext(task=task, progress=False, target=DeployTarget(runtime="onnxruntime"))
    apply_quantize(q, cfg, ctx)
    e32 = export_pte(fp32, ex, tmp / "fp32.pte")  # first: it sizes ExecuTorch's thread pool (1)
    e8 = export_pte(q, ex, tmp / "int8.pte", mode=int8_mode, calibration=task.calibration.head(cfg.calibration_size))
    p32 = export_onnx(fp32, ex, tmp / "fp32.onnx")
    p8 = export_onnx(q, ex, tmp / "int8.onnx")
    d = deploy_quantize(p8, q, cfg, ctx)
    cands = [*fp32_references(fp32, p32),
             Candidate(f"onnxruntime int8 (modelpress deployed, `{d['candidate']}`)", "onnxruntime",
                       f"int8 {d['candidate']}", ort_predict(p8), onnx_bytes(p8))]
    if not d["format"].startswith("int8"):  # deploy kept the float graph: time an int8 ORT form beside it
        forced = "static" if int8_mode == "int8-static" else "dynamic"
        qf, cfg_f = copy.deepcopy(fp32), Quantize(mode=int8_mode, deploy=forced)
        apply_quantize(qf, cfg_f, ctx)
        pf = export_onnx(qf, ex, tmp / "int8-forced.onnx")
        deploy_quantize(pf, qf, cfg_f, ctx)
        cands.append(Candidate(f"onnxruntime int8 (forced `{forced}`)", "onnxruntime", f"int8 {forced}",
                               ort_predict(pf), onnx_bytes(pf)))
        notes.append(f"modelpress deploy kept `{d['candidate']}` for {int8_mode}: {d['why'][:300]}")
    if ovr.openvino_available():
        cands += _ov_candidates(ovr.to_ir(p32, tmp / "fp32.xml"), "OpenVINO fp32 IR", ("f32",))
    for e in (e32, e8):
        cands.append(Candidate(f"ExecuTorch XNNPACK {e.mode}", "executorch", e.mode, pte_predict(e.path), e.bytes))
        notes.append(f"ExecuTorch {e.mode}: {e.ops.describe()}"
                     + (f"; carried from modelpress: {e.carried}" if e.carried else ""))
        notes += [f"ExecuTorch {e.mode}: {n}" for n in e.notes if not n.startswith("some ops fall back")]
    notes.append(f"ExecuTorch int8 / fp32 bytes: {e8.bytes / e32.bytes:.3f}")
    return cands, notes


def _et_int4(task: Task, fp32: torch.nn.Module, tmp: Path) -> tuple[list[Candidate], list[str]]:
    """ExecuTorch int4 programs of modelpress's ``int4-weight`` recipe (group 32, embeddings included):
    its default asymmetric codes (re-quantized symmetric for XNNPACK's kernels) and ``symmetric: true``
    codes (carried bit for bit)."""
    from modelpress.measure.executorch_runtime import pte_predict
    from modelpress.quantization.executorch_export import export_pte

    cands, notes = [], []
    ctx = StepContext(task=task, progress=False, target=DeployTarget(runtime="executorch"))
    for symmetric, how in ((None, "recipe int4-weight, asymmetric codes re-quantized symmetric"),
                           (True, "int4-weight symmetric: true, codes carried")):
        q = copy.deepcopy(fp32)
        apply_quantize(q, Quantize(mode="int4-weight", group_size=32, symmetric=symmetric), ctx)
        e = export_pte(q, task.example_inputs, tmp / f"int4-{bool(symmetric)}.pte", mode="int4-dynamic")
        cands.append(Candidate(f"ExecuTorch XNNPACK int4-dynamic ({how})", "executorch", "int4-dynamic g32",
                               pte_predict(e.path), e.bytes))
        kinds = sorted({n.split(": ", 1)[1].split(" (")[0] for n in e.notes
                        if ": " in n and not n.startswith("some ops fall back")})
        notes.append(f"ExecuTorch int4-dynamic ({how}): {e.ops.describe()}; carried from modelpress: "
                     f"{e.carried}; per layer: {'; '.join(kinds)}")
    return cands, notes


def _et_flips(task: Task, cands: list[Candidate], outs: dict[str, torch.Tensor]) -> list[str]:
    """Per quantized candidate, the test examples whose top-1 differs from torch fp32's: index, fp32's
    logit margin (top-1 minus runner-up) and whether fp32 or the candidate was right — an accuracy gap of
    an example or two is read off these, not off the accuracy column alone. Then each ExecuTorch quantized
    candidate paired with onnxruntime int8 on the same examples (`_paired`). ``outs``: `_test_outputs`."""
    ref = outs[cands[0].name].float()
    top2 = ref.topk(2, dim=1).values
    margin, target = top2[:, 0] - top2[:, 1], task.test.targets
    out, preds = [], {}
    for c in cands[1:]:
        if c.label in ("f32", "fp32"):
            continue
        pred = preds[c.name] = outs[c.name].float().argmax(1)
        flips = (pred != ref.argmax(1)).nonzero().flatten().tolist()
        cells = [f"#{i} (fp32 margin {float(margin[i]):.3f}, "
                 f"{'fp32 right' if ref[i].argmax() == target[i] else 'candidate right' if pred[i] == target[i] else 'both wrong'})"
                 for i in flips]
        out.append(f"{c.name}: {len(flips)} top-1 flips vs torch fp32" + (f": {', '.join(cells)}" if cells else ""))
    ort = next((c for c in cands if c.runtime == "onnxruntime" and c.name in preds), None)
    if ort is not None:
        out += [_paired(c.name, preds[c.name], ort.name, preds[ort.name], target)
                for c in cands if c.runtime == "executorch" and c.name in preds]
    return out


def _paired(a: str, pred_a: torch.Tensor, b: str, pred_b: torch.Tensor, target: torch.Tensor) -> str:
    """Two classifiers on the same examples: where exactly one is right, and the exact two-sided McNemar
    p-value (a binomial test on those discordant examples) — the chance of a split at least this uneven
    if the two were equally accurate."""
    from scipy.stats import binomtest

    right_a, right_b = pred_a == target, pred_b == target
    only_a = (right_a & ~right_b).nonzero().flatten().tolist()
    only_b = (right_b & ~right_a).nonzero().flatten().tolist()
    n = len(only_a) + len(only_b)
    p = binomtest(len(only_a), n, 0.5).pvalue if n else 1.0

    def ids(xs: list[int]) -> str:
        return ", ".join(f"#{i}" for i in xs) or "none"

    return (f"{a} vs {b}, paired on the {len(target)} test examples: right only in the first on "
            f"{len(only_a)} ({ids(only_a)}), only in the second on {len(only_b)} ({ids(only_b)}); accuracy "
            f"difference {100 * (len(only_a) - len(only_b)) / len(target):+.2f} points, exact McNemar p = {p:.2f}")


def _et_section(title: str, task: Task, fp32: torch.nn.Module, tmp: Path, int8_mode: str,
                int4: bool = False) -> list[str]:
    cands, notes = _et_candidates(task, fp32.eval(), tmp, int8_mode)
    if int4 and cands:
        more, more_notes = _et_int4(task, fp32, tmp)
        cands, notes = cands + more, notes + more_notes
    outs = _test_outputs(task, cands)  # once, for the flips and the table
    notes += _et_flips(task, cands, outs) if cands else []
    rows = _table(task, cands, [("batch 1", tuple(t[:1] for t in task.test.inputs))], outs=outs) if cands else []
    return [f"## ExecuTorch: {title}", "", *rows, "", *[f"- {n}" for n in notes],
            f"- load average when the section finished: {os.getloadavg()[0]:.2f}", ""]


def et_lenet5(tmp: Path) -> list[str]:
    task = get("fashion-mnist")
    return _et_section("LeNet-5 on Fashion-MNIST (batch 1, 1 thread, timed interleaved)", task,
                       task.model("lenet-5"), tmp, "int8-static")


def et_resnet(tmp: Path) -> list[str]:
    task = get("fashion-mnist")
    return _et_section("resnet-s on Fashion-MNIST (batch 1, 1 thread, timed interleaved)", task,
                       task.model("resnet-s"), tmp, "int8-static")


def et_minilm(tmp: Path) -> list[str]:
    task = get("bbc-news")
    return _et_section("MiniLM on bbc-news (batch 1 × 128 tokens, 1 thread, timed interleaved)", task,
                       task.model(), tmp, "int8-dynamic", int4=True)


def _versions() -> str:
    import onnxruntime

    out = [f"torch {torch.__version__}", f"onnxruntime {onnxruntime.__version__}"]
    for mod in ("openvino", "nncf", "executorch"):
        try:
            import importlib.metadata

            __import__(mod)
            out.append(f"{mod} {importlib.metadata.version(mod)}")
        except ImportError:
            out.append(f"{mod} not installed")
    return ", ".join(out)


def _machine() -> str:
    from modelpress.measure import openvino_runtime as ovr

    line = f"Machine: {os.cpu_count()} CPU cores, {cpu_info().describe()}."
    if ovr.openvino_available():
        line += (f" OpenVINO CPU capabilities: {', '.join(ovr.openvino_capabilities())}; 16-bit hints it "
                 f"executes here: {', '.join(ovr.sixteen_bit_precisions()) or 'none'}.")
    return line


def main() -> None:
    from benchmarks.runtimes_ablation import minilm_ablation  # it builds on this module's helpers

    torch.set_num_threads(1)
    want = set(os.environ.get("BENCH_RUNTIMES_ROWS", "minilm,resnet,et-lenet5,et-resnet,et-minilm").split(","))
    parts: dict[str, Callable[[Path], list[str]]] = {"minilm": minilm, "resnet": resnet, "et-lenet5": et_lenet5,
                                                     "et-resnet": et_resnet, "et-minilm": et_minilm,
                                                     "minilm-ablation": minilm_ablation}
    lines = ["# Runtimes benchmark", "", f"Command: `{COMMAND}`", "",
             f"{_machine().replace('Machine:', 'Machine of the latest run:')} Each section names its own.", "",
             f"Versions: {_versions()}.",
             "", ("× torch / × ORT fp32: median latency over that of torch fp32 / onnxruntime fp32 in the same "
                  "interleaved run (lower is faster). Executed format: what the runtime computes in, read off "
                  "OpenVINO's compiled graph (its matrix-product and convolution layers); for onnxruntime the "
                  "format modelpress wrote. Fidelity (logit cosine, top-1 agreement) is to torch fp32 on the "
                  "test split."), ""]
    with tempfile.TemporaryDirectory(prefix="bench-runtimes-") as d:
        for key, fn in parts.items():
            if key in want:
                sub = Path(d) / key
                sub.mkdir()
                section = fn(sub)
                # each section names its machine: a partial run keeps sections measured on other machines
                lines += [*section[:-1], f"- measured on: {_machine().removeprefix('Machine: ')}", section[-1]]
                _write(lines)  # after every section: a later one may wait long on a baseline being trained


def _write(lines: list[str]) -> None:
    from benchmarks.bench_quantization import _merge  # a partial run keeps the other sections

    text = _merge(DOC.read_text() if DOC.exists() else "", "\n".join(lines) + "\n")
    print(text, flush=True)
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text)


if __name__ == "__main__":
    main()
