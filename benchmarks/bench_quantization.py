"""Quantization benchmark (issue 4): PTQ / QAT on Fashion-MNIST CNNs and MiniLM, deployed to onnxruntime.

Run: ``HF_HUB_OFFLINE=1 .venv/bin/python -m benchmarks.run quantization`` (set ``BENCH_QUANT_ROWS=minilm`` or
``cnn`` and ``BENCH_QUANT_CNNS=lenet-5`` to run part; the other sections of the doc are kept). Writes docs/bench-quantization.md.

MiniLM (bbc-news, batch 1 × 128 tokens, 1 thread, interleaved in one process): torch fp32 eager,
onnxruntime fp32, onnxruntime's default ``quantize_dynamic`` (per-tensor s8 weights) and our deployed
int8. The sentence-embedding cosine of a deployed form is computed by exporting the encoder + mean
pooling (``MiniLMClassifier.embed``) as its own ONNX file and giving it the same rewrite (the format the
classifier's deployment chose, forced), then comparing with the fp32 torch embeddings on the test split.
CNNs (Fashion-MNIST, lenet-5 and resnet-s): int8 static PTQ simulated vs deployed, int8 vs fp32 latency
in onnxruntime at batch 32, and 4-bit weights by PTQ and by QAT (2 epochs on 15k training images).
"""

from __future__ import annotations

import copy
import dataclasses
import os
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from modelpress.artifact import folder_bytes, save
from modelpress.artifact.onnx import export_onnx
from modelpress.context import DeployTarget, StepContext
from modelpress.measure.cpu import cpu_info
from modelpress.measure.latency import time_interleaved
from modelpress.measure.onnx_size import onnx_bytes
from modelpress.measure.runtime import ort_predict
from modelpress.quantization import Quantize, apply_quantize, deploy_quantize
from modelpress.tasks import get
from modelpress.tasks.train import evaluate, torch_predict

DOC = Path(__file__).resolve().parents[1] / "docs" / "bench-quantization.md"
COMMAND = "HF_HUB_OFFLINE=1 .venv/bin/python -m benchmarks.run quantization"


class _Embedder(nn.Module):
    """MiniLM encoder + mean pooling as one module, so the embedding can be exported to ONNX."""

    def __init__(self, clf: nn.Module) -> None:
        super().__init__()
        self.clf = clf

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.clf.embed(input_ids, attention_mask)


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.float(), b.float(), dim=1).mean())


def _ctx(task) -> StepContext:
    # onnxruntime's candidates only: this doc's deployed rows are run with ort_predict (docs/bench-runtimes.md
    # has the cross-runtime choice)
    return StepContext(task=task, progress=False, target=DeployTarget(runtime="onnxruntime"))


def minilm(tmp: Path) -> list[str]:
    from onnxruntime.quantization import quantize_dynamic

    task = get("bbc-news")
    fp32 = task.model().eval()
    test = task.test
    ex = task.example_inputs
    lines = []
    # --- int8: our step + deployment
    q8 = copy.deepcopy(fp32)
    log = apply_quantize(q8, Quantize(mode="int8-dynamic"), _ctx(task))
    p_fp32 = export_onnx(fp32, ex, tmp / "fp32.onnx")
    p_q8 = export_onnx(q8, ex, tmp / "q8.onnx")
    details = deploy_quantize(p_q8, q8, Quantize(mode="int8-dynamic"), _ctx(task))
    p_def = tmp / "default.onnx"
    quantize_dynamic(str(p_fp32), str(p_def))  # onnxruntime's defaults: per-tensor s8 weights
    preds = {"torch fp32": torch_predict(fp32, 1), "ORT fp32": ort_predict(p_fp32),
             "ORT default dynamic": ort_predict(p_def), "deployed int8": ort_predict(p_q8)}
    lat = dict(zip(preds, time_interleaved(list(preds.values()), ex, threads=1, warmup=5, runs=40), strict=True))
    acc = {"torch fp32": evaluate(fp32, task), "torch int8 sim": evaluate(q8, task)}
    for k in ("ORT fp32", "ORT default dynamic", "deployed int8"):
        acc[k] = task.metric(preds[k], test)
    # --- embedding cosine to fp32, on the test split
    with torch.no_grad():
        ref = torch.cat([fp32.embed(*(t[i:i + 64] for t in test.inputs)) for i in range(0, len(test), 64)])
    e_fp32 = export_onnx(_Embedder(fp32), ex, tmp / "emb_fp32.onnx")
    e_def = tmp / "emb_default.onnx"
    quantize_dynamic(str(e_fp32), str(e_def))
    e_q8 = export_onnx(_Embedder(q8), ex, tmp / "emb_q8.onnx")
    deploy_quantize(e_q8, q8, Quantize(mode="int8-dynamic", deploy=details["candidate"]), StepContext(progress=False))
    with torch.no_grad():
        sim = torch.cat([q8.embed(*(t[i:i + 64] for t in test.inputs)) for i in range(0, len(test), 64)])
    cos = {"torch int8 sim": _cos(sim, ref), "ORT default dynamic": _cos(ort_predict(e_def)(test.inputs), ref),
           "deployed int8": _cos(ort_predict(e_q8)(test.inputs), ref)}
    # --- artifact sizes (int4: weight-only, group 32, embedding table included)
    q4 = copy.deepcopy(fp32)
    apply_quantize(q4, Quantize(mode="int4-weight"), _ctx(task))
    sizes = {k: folder_bytes(save(m, tmp / f"art_{k}")) for k, m in (("fp32", fp32), ("int8", q8), ("int4", q4))}
    acc["torch int4 sim"] = evaluate(q4, task)
    # --- 16 bits: storage (our fp16 step computes in fp32) vs 16-bit compute in torch on this CPU
    h16 = copy.deepcopy(fp32)
    apply_quantize(h16, Quantize(mode="fp16"), _ctx(task))
    sizes["fp16"] = folder_bytes(save(h16, tmp / "art_fp16"))
    bf16, f16 = copy.deepcopy(fp32).to(torch.bfloat16), copy.deepcopy(fp32).to(torch.float16)
    l16 = time_interleaved([torch_predict(fp32, 1), torch_predict(bf16, 1), torch_predict(f16, 1)], ex,
                           threads=1, warmup=2, runs=10)
    del bf16, f16
    base_ms = lat["torch fp32"].median_ms
    lines += ["## MiniLM on bbc-news (batch 1 × 128 tokens, 1 thread, timed interleaved)", "",
              "| model | latency ms (median) | speed-up vs torch fp32 | test accuracy | embedding cosine to fp32 |",
              "|---|---:|---:|---:|---:|"]
    for k in preds:
        c = cos.get(k, 1.0 if "fp32" in k else float("nan"))
        lines.append(f"| {k} | {lat[k].median_ms:.2f} | {base_ms / lat[k].median_ms:.2f}× | {acc[k]:.4f} | {c:.4f} |")
    lines += [f"| torch int8 simulation | – | – | {acc['torch int8 sim']:.4f} | {cos['torch int8 sim']:.4f} |",
              f"| torch int4 simulation (weight-only, g32) | – | – | {acc['torch int4 sim']:.4f} | – |", "",
              (f"- deployed int8 vs onnxruntime default quantize_dynamic, latency ratio (deployed / default): "
              f"**{lat['deployed int8'].median_ms / lat['ORT default dynamic'].median_ms:.3f}**"),
              f"- accuracy drop deployed int8 vs torch fp32: {100 * (acc['torch fp32'] - acc['deployed int8']):.2f} points",
              f"- deployment chose `{details['format']}`: {details['why']}",
              (f"- artifact bytes: fp32 {sizes['fp32']:,}; int8 {sizes['int8']:,} "
              f"(**{sizes['int8'] / sizes['fp32']:.3f}×**); int4 {sizes['int4']:,} "
              f"(**{sizes['int4'] / sizes['fp32']:.3f}×**). The word-embedding table is quantized in both "
              f"artifacts ({', '.join(log.details['embeddings_quantized'])}); the deployed int8 ONNX file: "
              f"{onnx_bytes(p_q8):,} bytes ({onnx_bytes(p_q8) / onnx_bytes(p_fp32):.3f}× the fp32 ONNX)."),
              (f"- 16 bits is a storage format here: fp16 artifact {sizes['fp16']:,} bytes "
               f"({sizes['fp16'] / sizes['fp32']:.3f}×, computed in fp32); 16-bit *compute* in torch: fp32 "
               f"{l16[0].median_ms:.1f} ms, bf16 {l16[1].median_ms:.1f} ms "
               f"({l16[1].median_ms / l16[0].median_ms:.2f}× the fp32 time), fp16 {l16[2].median_ms:.1f} ms "
               f"({l16[2].median_ms / l16[0].median_ms:.2f}×) on this CPU ({cpu_info().describe()}); the step still "
               "computes in fp32 (16-bit compute is the deployment's choice, docs/bench-runtimes.md)."),
              "", (f"Deployment candidates, judged on {details['judged_on']['examples']} held-out training "
                   f"examples against {details['reference']} (floor: {details['floor']}):"), "",
              "| candidate | label (from its graph) | agreement | SQNR dB | latency ms | ONNX bytes |",
              "|---|---|---:|---:|---:|---:|"]
    for c in details["candidates"]:
        f = c.get("fidelity") or {}
        lines.append(f"| {c['name']} | {c['label']} | {f.get('agreement') or float('nan'):.4f} "
                     f"| {f.get('sqnr_db') or float('inf'):.1f} | {c.get('latency_ms') or float('nan'):.2f} "
                     f"| {c['bytes']:,} |" if "error" not in c else f"| {c['name']} | error: {c['error']} | | | | |")
    return lines + [""]


def cnn(tmp: Path, model_name: str) -> list[str]:
    task = get("fashion-mnist")
    fp32 = task.model(model_name).eval()
    acc_fp32 = evaluate(fp32, task)
    rows = []
    # int8 static PTQ
    q8 = copy.deepcopy(fp32)
    cfg8 = Quantize(mode="int8-static")
    apply_quantize(q8, cfg8, _ctx(task))
    p_fp32 = export_onnx(fp32, task.example_inputs, tmp / f"{model_name}_fp32.onnx")
    p8 = export_onnx(q8, task.example_inputs, tmp / f"{model_name}_q8.onnx")
    d8 = deploy_quantize(p8, q8, cfg8, _ctx(task))
    sim8, dep8 = evaluate(q8, task), task.metric(ort_predict(p8), task.test)
    batch = tuple(t[:32] for t in task.test.inputs)
    l32 = time_interleaved([ort_predict(p_fp32), ort_predict(p8)], batch, threads=1, warmup=3, runs=20)
    # 4-bit weights, PTQ vs QAT: groups of 32 inputs per scale (per channel where a row is not a multiple of
    # 32: LeNet's convs, the stem); QAT: 2 epochs over 15k training images, lr 1e-4 decayed by cosine
    q4 = copy.deepcopy(fp32)
    apply_quantize(q4, Quantize(mode="int4-weight"), _ctx(task))
    qat = copy.deepcopy(fp32)
    small = dataclasses.replace(task, train=task.train.head(15000))
    t0 = time.perf_counter()
    apply_quantize(qat, Quantize(mode="qat", bits=4, epochs=2, lr=1e-4), _ctx(small))
    qat_s = time.perf_counter() - t0
    acc_q4, acc_qat = evaluate(q4, task), evaluate(qat, task)
    sizes = {k: folder_bytes(save(m, tmp / f"{model_name}_{k}")) for k, m in (("fp32", fp32), ("int8", q8), ("int4", q4))}
    rows += [f"## {model_name} on Fashion-MNIST (test split, 10k images)", "",
             "| variant | test accuracy | drop vs fp32 (points) | artifact bytes (× fp32) |", "|---|---:|---:|---:|",
             f"| fp32 | {acc_fp32:.4f} | – | {sizes['fp32']:,} (1.000×) |",
             (f"| int8 static PTQ, torch simulation | {sim8:.4f} | {100 * (acc_fp32 - sim8):.2f} | "
             f"{sizes['int8']:,} ({sizes['int8'] / sizes['fp32']:.3f}×) |"),
             (f"| int8 static PTQ, deployed in onnxruntime (`{d8['format']}`) | {dep8:.4f} | "
             f"{100 * (acc_fp32 - dep8):.2f} | – |"),
             (f"| 4-bit weights, PTQ (group 32) | {acc_q4:.4f} | "
             f"{100 * (acc_fp32 - acc_q4):.2f} | {sizes['int4']:,} ({sizes['int4'] / sizes['fp32']:.3f}×) |"),
             (f"| 4-bit weights, QAT (2 epochs on 15k images, cosine lr, {qat_s:.0f} s) | {acc_qat:.4f} | "
             f"{100 * (acc_fp32 - acc_qat):.2f} | same as PTQ |"), "",
             f"- deployed vs simulated int8: {100 * (dep8 - sim8):+.2f} points",
             (f"- onnxruntime batch 32, 1 thread: fp32 {l32[0].median_ms:.2f} ms, deployed int8 "
             f"{l32[1].median_ms:.2f} ms (ratio int8 / fp32 **{l32[1].median_ms / l32[0].median_ms:.2f}**)"),
             f"- deployment chose `{d8['format']}`: {d8['why']}", ""]
    return rows


def _cpu_flags() -> str:
    """Which int8 instruction sets this CPU reports: they decide onnxruntime's int8 kernels."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return "flags unknown"
    return ", ".join(f"{f} {'yes' if f in flags else 'no'}" for f in ("avx2", "avx512_vnni", "avx_vnni", "amx_int8"))


def main() -> None:
    torch.set_num_threads(1)
    want = set(os.environ.get("BENCH_QUANT_ROWS", "minilm,cnn").split(","))
    lines = ["# Quantization benchmark", "", f"Command: `{COMMAND}`", "",
             (f"Machine: {os.cpu_count()} CPU cores ({_cpu_flags()}); torch {torch.__version__}; "
             "1 thread for every timing."), "",
             ("How the deployed form is chosen: `deploy_quantize` builds the candidate ONNX formats for the mode "
             "(onnxruntime `quantize_dynamic` with per-channel s8 weights, `quantize_static` QDQ with u8 "
             "activations and s8 per-channel weights with / without reduce-range, MatMulNBits from our 4-bit "
             "codes, or the fp32 graph), checks each against its graph, runs each on held-out training examples "
             "(outside the calibration split) and at batch 1, and keeps the fastest whose top-1 agreement with "
             "the fp32 model stays within 0.3 points of the PyTorch model's and whose SQNR is within 12 dB of it "
             "(the fp32 graph only when 10% faster than every quantized one; `modelpress.measure.choose`). The "
             "label is read from the shipped graph. The MiniLM embedding cosine "
             "is measured on an ONNX export of `embed` (encoder + mean pooling) given the same format."), ""]
    with tempfile.TemporaryDirectory(prefix="bench-quant-") as d:
        tmp = Path(d)
        if "minilm" in want:
            lines += minilm(tmp)
        if "cnn" in want:
            for name in os.environ.get("BENCH_QUANT_CNNS", "lenet-5,resnet-s").split(","):
                lines += cnn(tmp, name)
    text = _merge(DOC.read_text() if DOC.exists() else "", "\n".join(lines) + "\n")
    print(text)
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text)


def _sections(text: str) -> tuple[str, dict[str, str]]:
    head, *parts = text.split("\n## ")
    return head, {p.split("\n", 1)[0]: "## " + p for p in parts}


def _merge(old: str, new: str) -> str:
    """A partial run (BENCH_QUANT_ROWS) replaces its own sections and keeps the others from the last run."""
    _, old_secs = _sections(old)
    head, new_secs = _sections(new)
    merged = {**old_secs, **new_secs}
    return head.rstrip("\n") + "\n\n" + "\n".join(s.rstrip("\n") + "\n" for s in merged.values())


if __name__ == "__main__":
    main()
