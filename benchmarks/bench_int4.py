"""4-bit weights benchmark (issue 13, items 3-4): MiniLM on bbc-news, modelpress against round-to-nearest peers.

Run: ``HF_HUB_OFFLINE=1 .venv/bin/python -m benchmarks.run int4`` (``BENCH_INT4_ROWS=fidelity`` or
``deploy`` runs one part; the other section of the doc is kept). Writes docs/bench-int4.md.

- **fidelity**: the sentence embedding (``MiniLMClassifier.embed``: encoder + mean pooling) of every
  test article, against the fp32 model's: mean cosine and relative error ``‖E - E₃₂‖ / ‖E₃₂‖`` (the
  output error). modelpress's 4-bit weights (torch simulation; group 32 and 128; the grid used before
  this change, ``max/7``, rebuilt here from the same functions for comparison; the 16-level symmetric
  grid; asymmetric with zero points, the default; GPTQ) beside onnxruntime's own weight-only quantizer
  (``MatMulNBitsQuantizer``, round to nearest, the same block size, run in onnxruntime) and NNCF's
  ``compress_weights(INT4_SYM, group_size=32)`` (its defaults, run in OpenVINO with the f32 hint), all
  on the same exported embedding graph in one run.
- **deploy**: the classifier deployed by ``deploy_quantize`` (target onnxruntime, 1 thread, batch 1) as
  int4 g32 RTN and int4 g32 GPTQ (and, when deploy chose another form, their MatMulNBits form), timed
  interleaved with torch fp32 eager, onnxruntime fp32 and onnxruntime's own MatMulNBits file (batch 1 ×
  128 tokens, 1 thread); file bytes, artifact bytes, the sentence-embedding cosine of the same form (the
  embedding graph given the same rewrite), top-1 agreement with fp32 and test accuracy.
"""

from __future__ import annotations

import copy
import logging
import os
import tempfile
import time
from pathlib import Path

import onnx
import torch
from torch import Tensor, nn

from modelpress.artifact import folder_bytes, save
from modelpress.artifact.onnx import export_onnx
from modelpress.context import DeployTarget, StepContext
from modelpress.measure.cpu import cpu_info
from modelpress.measure.latency import time_interleaved
from modelpress.measure.onnx_size import onnx_bytes
from modelpress.measure.runtime import ort_predict
from modelpress.quantization import QuantEmbedding, Quantize, QuantLinear, apply_quantize, deploy_quantize
from modelpress.quantization.affine import dequantize_weight, group_view, quantize, ungroup
from modelpress.quantization.deploy import build_candidate
from modelpress.quantization.onnx_rewrite import match_layers
from modelpress.tasks import get
from modelpress.tasks.task import Task
from modelpress.tasks.train import torch_predict

DOC = Path(__file__).resolve().parents[1] / "docs" / "bench-int4.md"
COMMAND = "HF_HUB_OFFLINE=1 .venv/bin/python -m benchmarks.run int4"
_ONNX_RTN = "onnxruntime MatMulNBitsQuantizer RTN"


class _Embedder(nn.Module):
    """The classifier's encoder + mean pooling as one module, so the embedding can be exported."""

    def __init__(self, clf: nn.Module) -> None:
        super().__init__()
        self.clf = clf

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        return self.clf.embed(input_ids, attention_mask)


def _errors(e: Tensor, ref: Tensor) -> tuple[float, float]:
    """(mean per-article cosine, relative Frobenius error) of embeddings ``e`` against ``ref`` ``(n, d)``."""
    cos = float(torch.nn.functional.cosine_similarity(e.float(), ref.float(), dim=1).mean())
    return cos, float((e.float() - ref.float()).norm() / ref.float().norm())


def _old_grid(model: nn.Module, fp32: nn.Module) -> nn.Module:
    """``model`` (quantized) with every 4-bit layer re-coded from ``fp32``'s weights on the grid modelpress
    used before this change: symmetric, ``scale = max|w| / 7`` per group (15 of the 16 levels)."""
    out = copy.deepcopy(model)
    for name, m in out.named_modules():
        if isinstance(m, (QuantLinear, QuantEmbedding)) and m.spec.bits == 4:
            spec = m.spec
            w = fp32.get_submodule(name).weight.detach().float()
            view = group_view(w, spec.granularity, spec.group_size)
            s = (view.abs().amax(-1, keepdim=True) / 7).clamp_min(1e-12).half().float()
            z = torch.zeros_like(s, dtype=torch.int32)
            q = ungroup(quantize(view, s, z, -8, 7).to(torch.int8), w.shape)
            m.qweight.copy_(q)
            m.scale.copy_(s)
            m.zero_point.copy_(z)
            m.weight.copy_(dequantize_weight(q, s, z, spec.granularity, spec.group_size))
    return out


def _sim(fp32: nn.Module, task: Task, cfg: Quantize) -> tuple[nn.Module, float]:
    q = copy.deepcopy(fp32)
    t0 = time.perf_counter()
    apply_quantize(q, cfg, StepContext(task=task, progress=False))
    return q.eval(), time.perf_counter() - t0


def _embed_all(model: nn.Module, inputs: tuple[Tensor, ...]) -> Tensor:
    return torch_predict(_Embedder(model).eval(), 32)(inputs)


def _ort_rtn(fp32_onnx: Path, out: Path, block: int, symmetric: bool) -> Path:
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    q = MatMulNBitsQuantizer(onnx.load(str(fp32_onnx)), block_size=block, is_symmetric=symmetric)
    logging.disable(logging.INFO)  # it logs one line per node it skips
    try:
        q.process()
    finally:
        logging.disable(logging.NOTSET)
    q.model.save_model_to_file(str(out), use_external_data_format=False)
    return out


def _nncf_int4(fp32_onnx: Path, tmp: Path) -> tuple[object | None, str]:
    """NNCF INT4_SYM g32 weight compression of the fp32 graph (data-free, its defaults), compiled in
    OpenVINO with the f32 hint; (None, why) when nncf / OpenVINO are missing or fail."""
    try:
        import nncf
        import openvino as ov

        from modelpress.measure import openvino_runtime as ovr
    except ImportError as e:
        return None, f"NNCF peer skipped: {e}"
    try:
        model = ov.Core().read_model(str(fp32_onnx))
        c = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT4_SYM, group_size=32)
        ov.save_model(c, str(tmp / "nncf.xml"), compress_to_fp16=False)
        compiled = ovr.compile_openvino(tmp / "nncf.xml", threads=1, precision="f32")
        return ovr.predict_compiled(compiled), ""
    except Exception as e:  # noqa: BLE001 - a peer that fails is reported, not fatal
        return None, f"NNCF peer failed: {type(e).__name__}: {str(e)[:200]}"


def fidelity(tmp: Path) -> list[str]:
    task = get("bbc-news")
    fp32 = task.model().eval()
    x = task.test.inputs
    ref = _embed_all(fp32, x)
    ex = task.example_inputs
    p32 = export_onnx(_Embedder(fp32).eval(), ex, tmp / "embed32.onnx")
    rows: list[tuple[str, str, float, float, str]] = []  # (method, group, cosine, rel error, note)

    def add(name: str, group: str, e: Tensor, note: str = "") -> None:
        rows.append((name, group, *_errors(e, ref), note))
        print(f"  {name} g{group}: cosine {rows[-1][2]:.4f}, rel. error {rows[-1][3]:.4f}", flush=True)

    for g in (32, 128):
        sym, _ = _sim(fp32, task, Quantize(mode="int4-weight", group_size=g, symmetric=True))
        add("modelpress RTN, symmetric max/7 (the grid before this change)", str(g), _embed_all(_old_grid(sym, fp32), x))
        add("modelpress RTN, symmetric max/8 (16 levels)", str(g), _embed_all(sym, x))
        asym, _ = _sim(fp32, task, Quantize(mode="int4-weight", group_size=g))
        add("modelpress RTN, asymmetric (default)", str(g), _embed_all(asym, x))
        enc, _ = _sim(fp32, task, Quantize(mode="int4-weight", group_size=g, quantize_embeddings=False))
        add("modelpress RTN, asymmetric, embeddings fp32", str(g), _embed_all(enc, x),
            "the layers onnxruntime's quantizer touches")
        for sym_ort in (False, True):
            p = _ort_rtn(p32, tmp / f"ort{g}{sym_ort}.onnx", g, sym_ort)
            add(f"{_ONNX_RTN}, {'symmetric' if sym_ort else 'asymmetric (its default)'}", str(g),
                ort_predict(p)(x), "MatMul layers only; embeddings fp32; run in onnxruntime")
        gq, secs = _sim(fp32, task, Quantize(mode="int4-weight", group_size=g, method="gptq"))
        add("modelpress GPTQ, asymmetric", str(g), _embed_all(gq, x),
            f"{Quantize().calibration_size} calibration articles, {secs:.0f} s")
        if g == 32:
            pred, why = _nncf_int4(p32, tmp)
            if pred is None:
                rows.append(("NNCF INT4_SYM", "32", float("nan"), float("nan"), why))
            else:
                add("NNCF compress_weights INT4_SYM", "32", pred(x),
                    "its defaults: embeddings and the last layer in its int8 backup; run in OpenVINO f32")
    rtn = {g: r for n, g, *r in rows if n == "modelpress RTN, asymmetric (default)"}
    gptq = {g: r for n, g, *r in rows if n == "modelpress GPTQ, asymmetric"}
    lines = ["## Fidelity: sentence embeddings of the test split (torch simulation unless noted)", "",
             (f"{len(task.test)} test articles, batch 32. Cosine: mean per article; rel. error: "
             "‖E − E_fp32‖ / ‖E_fp32‖ over all articles."), "",
             "| method | group | cosine | rel. error | note |", "|---|---:|---:|---:|---|"]
    lines += [f"| {n} | {g} | {c:.4f} | {r:.4f} | {note} |" for n, g, c, r, note in rows]
    lines += [""] + [f"- group {g}: GPTQ rel. error {gptq[g][1]:.4f} vs RTN {rtn[g][1]:.4f} "
                     f"(**{100 * (1 - gptq[g][1] / rtn[g][1]):.1f}% lower**); cosine {gptq[g][0]:.4f} vs "
                     f"{rtn[g][0]:.4f}" for g in rtn if g in gptq]
    return [*lines, f"- load average when the row finished: {os.getloadavg()[0]:.1f}", ""]


def _deployed(fp32: nn.Module, task: Task, cfg: Quantize, tmp: Path, name: str) -> dict:
    q, secs = _sim(fp32, task, cfg)
    ctx = StepContext(task=task, progress=False, reference=fp32, target=DeployTarget(runtime="onnxruntime"))
    path = export_onnx(q, task.example_inputs, tmp / f"{name}.onnx")
    exported = onnx.load(str(path))
    nbits = tmp / f"{name}-nbits.onnx"  # the MatMulNBits form, timed beside whatever deploy chooses
    build_candidate("nbits-int8-compute", path, nbits, exported, match_layers(exported, q), cfg, None)
    d = deploy_quantize(path, q, cfg, ctx)
    emb = export_onnx(_Embedder(q).eval(), task.example_inputs, tmp / f"{name}-embed.onnx")
    src = onnx.load(str(emb))
    build_candidate(d["candidate"], emb, tmp / f"{name}-embed-dep.onnx", src, match_layers(src, q), cfg, None)
    build_candidate("nbits-int8-compute", emb, tmp / f"{name}-embed-nb.onnx", src, match_layers(src, q), cfg, None)
    return {"path": path, "nbits": nbits, "details": d, "artifact": folder_bytes(save(q, tmp / f"{name}-artifact")),
            "embed": ort_predict(tmp / f"{name}-embed-dep.onnx")(task.test.inputs), "seconds": secs,
            "nbits_embed": ort_predict(tmp / f"{name}-embed-nb.onnx")(task.test.inputs)}


def deploy(tmp: Path) -> list[str]:
    task = get("bbc-news")
    fp32 = task.model().eval()
    x = task.test.inputs
    ex = task.example_inputs
    ref_emb = _embed_all(fp32, x)
    p32 = export_onnx(fp32, ex, tmp / "fp32.onnx")
    dep = {"modelpress int4 g32 RTN": _deployed(fp32, task, Quantize(mode="int4-weight"), tmp, "rtn32"),
           "modelpress int4 g32 GPTQ": _deployed(fp32, task, Quantize(mode="int4-weight", method="gptq"), tmp,
                                                 "gptq32")}
    peer = _ort_rtn(p32, tmp / "ort-rtn32.onnx", 32, False)
    peer_emb = ort_predict(_ort_rtn(export_onnx(_Embedder(fp32).eval(), ex, tmp / "e32.onnx"),
                                    tmp / "ort-rtn32-embed.onnx", 32, False))(x)
    cands = {"torch fp32 (eager)": (torch_predict(fp32, 1), None, None, ref_emb),
             "onnxruntime fp32": (ort_predict(p32), onnx_bytes(p32), None, ref_emb),
             f"{_ONNX_RTN} g32 (asymmetric)": (ort_predict(peer), onnx_bytes(peer), None, peer_emb)}
    for name, r in dep.items():
        cands[f"{name} (deployed `{r['details']['candidate']}`)"] = (
            ort_predict(r["path"]), onnx_bytes(r["path"]), r["artifact"], r["embed"])
        if r["details"]["candidate"] != "nbits-int8-compute":
            cands[f"{name} as MatMulNBits (`nbits-int8-compute`, not chosen)"] = (
                ort_predict(r["nbits"]), onnx_bytes(r["nbits"]), r["artifact"], r["nbits_embed"])
    logits = {k: v[0](x) for k, v in cands.items()}
    times = time_interleaved([v[0] for v in cands.values()], ex, threads=1, warmup=5, runs=30, rewarm=True)
    ms = {k: t.median_ms for k, t in zip(cands, times, strict=True)}
    t_torch, b32 = ms["torch fp32 (eager)"], onnx_bytes(p32)
    lines = ["## Deployed in onnxruntime (MiniLM classifier, batch 1 × 128 tokens, 1 thread, interleaved)", "",
             ("| candidate | ms | × torch fp32 | file bytes | × fp32 ONNX | artifact bytes | embedding cosine "
             "| top-1 agree | accuracy |"), "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    ref_top = logits["torch fp32 (eager)"].argmax(1)
    for k, (_, size, art, emb) in cands.items():
        agree = float((logits[k].argmax(1) == ref_top).float().mean())
        acc = task.metric.on_outputs(logits[k], task.test)
        lines.append(f"| {k} | {ms[k]:.2f} | {ms[k] / t_torch:.3f} | {f'{size:,}' if size else '–'} | "
                     f"{f'{size / b32:.3f}' if size else '–'} | {f'{art:,}' if art else '–'} | "
                     f"{_errors(emb, ref_emb)[0]:.4f} | {agree:.4f} | {acc:.4f} |")
    lines.append("")
    for name, r in dep.items():
        d = r["details"]
        lines.append(f"- {name}: shipped `{d['candidate']}` ({d['format']}; ops {_ops(d['ops'])}); {d['why']}")
        lines.append(f"  - embeddings: {d.get('embeddings', 'none quantized')}")
    return [*lines, f"- load average when the row finished: {os.getloadavg()[0]:.1f}", ""]


def _ops(ops: dict[str, int]) -> str:
    keep = ("MatMulNBits", "GatherBlockQuantized", "Gather", "MatMul", "Gemm")
    return ", ".join(f"{k} {v}" for k, v in ops.items() if k in keep)


def _versions() -> str:
    import onnxruntime

    out = [f"torch {torch.__version__}", f"onnxruntime {onnxruntime.__version__}"]
    for mod in ("openvino", "nncf"):
        try:
            out.append(f"{mod} {__import__(mod).__version__}")
        except ImportError:
            out.append(f"{mod} not installed")
    return ", ".join(out)


def main() -> None:
    from benchmarks.bench_quantization import _merge  # a partial run keeps the other sections

    torch.set_num_threads(1)
    want = set(os.environ.get("BENCH_INT4_ROWS", "fidelity,deploy").split(","))
    lines = ["# 4-bit weights benchmark", "", f"Command: `{COMMAND}`", "",
             f"Machine: {os.cpu_count()} CPU cores, {cpu_info().describe()}.", "", f"Versions: {_versions()}.",
             "", ("MiniLM (all-MiniLM-L6-v2 + linear head, the cached bbc-news baseline); weight-only 4-bit "
             "with fp16 scales per group of input weights."), ""]
    with tempfile.TemporaryDirectory(prefix="bench-int4-") as d:
        for key, fn in (("fidelity", fidelity), ("deploy", deploy)):
            if key in want:
                sub = Path(d) / key
                sub.mkdir()
                lines += fn(sub)
                text = _merge(DOC.read_text() if DOC.exists() else "", "\n".join(lines) + "\n")
                DOC.write_text(text)
                print(text, flush=True)


if __name__ == "__main__":
    main()
