"""Deployment labels benchmark: trained built-in models × quantization modes, the shipped ONNX as read
from its graph, and why each winner won.

Run: ``HF_HUB_OFFLINE=1 .venv/bin/python -m benchmarks.run deploy`` (``BENCH_DEPLOY_ROWS=lenet-300-100,lenet-5``
and / or ``BENCH_DEPLOY_MODES=int4-weight`` to run part: the rows measured replace theirs in the doc, the
others are kept). Writes docs/bench-deploy.md.

For each trained baseline and mode: quantize a copy (`apply_quantize`), export, let the deployment build its
candidates, check each against its graph and choose (`deploy_onnx`: fidelity to the fp32 baseline on 512
held-out training examples, batch-1 latency in onnxruntime, 1 thread). The label is
`modelpress.measure.onnx_graph.onnx_format` of the shipped file; the test accuracy is that file run in
onnxruntime on the test split. A baseline that is not cached (training it takes minutes) is left out and
named. Sized for about 10 minutes on 2 shared cores.
"""

from __future__ import annotations

import copy
import os
import tempfile
import time
from pathlib import Path

import torch

from modelpress.artifact.onnx import export_onnx
from modelpress.context import DeployTarget, StepContext
from modelpress.measure.onnx_size import onnx_bytes
from modelpress.measure.runtime import ort_predict
from modelpress.quantization import Quantize, apply_quantize
from modelpress.quantization.deploy import deploy_onnx
from modelpress.tasks import get
from modelpress.tasks.builtin import baseline_path

DOC = Path(__file__).resolve().parents[1] / "docs" / "bench-deploy.md"
COMMAND = "HF_HUB_OFFLINE=1 .venv/bin/python -m benchmarks.run deploy"
MODELS = (("mnist-5k", "lenet-300-100"), ("mnist-5k", "lenet-5"), ("fashion-mnist", "resnet-s"),
          ("bbc-news", "minilm-l6"))
MODES = ("int8-dynamic", "int8-static", "int4-weight", "fp16")
_INTEGER = ("MatMulInteger", "ConvInteger", "QuantizeLinear", "DequantizeLinear", "MatMulNBits",
            "DynamicQuantizeLinear", "Cast")


def _row(task_name: str, model_name: str, mode: str, tmp: Path) -> tuple[str, str]:
    task = get(task_name)
    ref = task.model(model_name).eval()
    model = copy.deepcopy(ref)
    cfg = Quantize(mode=mode)
    t0 = time.perf_counter()
    apply_quantize(model, cfg, StepContext(task=task, progress=False))
    path = export_onnx(model, task.example_inputs, tmp / f"{model_name}-{mode}.onnx")
    fp32_bytes = onnx_bytes(export_onnx(ref, task.example_inputs, tmp / "fp32.onnx"))
    # onnxruntime's candidates only: this doc is about the labels of the ONNX file (docs/bench-runtimes.md
    # has the cross-runtime choice)
    d = deploy_onnx(path, model, cfg, StepContext(task=task, progress=False, reference=ref,
                                                  target=DeployTarget(runtime="onnxruntime")))
    seconds = time.perf_counter() - t0
    acc = task.metric(ort_predict(path), task.test)
    table = {c["name"]: c for c in d["candidates"]}
    float_ms, win = table.get("float", {}).get("latency_ms"), table[d["candidate"]]
    ratio = f"{win['latency_ms'] / float_ms:.2f}×" if float_ms else "–"
    ops = ", ".join(f"{k} {v}" for k, v in d["ops"].items() if k in _INTEGER) or "none"
    return (f"| {model_name} | {mode} | **{d['format']}** | {d['candidate']} | {ops} | {onnx_bytes(path):,} "
            f"({onnx_bytes(path) / fp32_bytes:.2f}×) | {acc:.4f} | {ratio} | {seconds:.0f} s |"), d["why"]


def main() -> None:
    want = set(os.environ.get("BENCH_DEPLOY_ROWS", ",".join(m for _, m in MODELS)).split(","))
    modes = [m for m in MODES if m in os.environ.get("BENCH_DEPLOY_MODES", ",".join(MODES)).split(",")]
    lines = ["# Deployment labels benchmark", "", f"Command: `{COMMAND}`", "",
             (f"Machine: {os.cpu_count()} CPU cores; torch {torch.__version__}; 1 thread, batch 1 for every "
              "timing. Every candidate's graph is checked against its name before it is measured; the label is "
              "read from the shipped file (ops listed are the quantization ops it holds; `Cast` is fp16 "
              "storage)."), "",
             ("| model | requested | shipped (from the graph) | candidate | quantization ops | ONNX bytes (vs fp32) "
              "| test accuracy (onnxruntime) | latency vs float graph | seconds |"),
             "|---|---|---|---|---|---:|---:|---:|---:|"]
    whys, missing = [], []
    with tempfile.TemporaryDirectory(prefix="bench-deploy-") as d:
        for task_name, model_name in MODELS:
            if model_name not in want:
                continue
            if not baseline_path(task_name, model_name).is_file():
                missing.append(f"{model_name} on {task_name}")
                continue
            for mode in modes:
                print(f"  {model_name} {mode} ...", flush=True)
                row, why = _row(task_name, model_name, mode, Path(d))
                lines.append(row)
                whys.append(f"- {model_name}, {mode}: {why}")
                _write(lines, whys, missing)  # after every row: a long run leaves what it measured
    _write(lines, whys, missing)
    print(f"wrote {DOC}")


def _kept(lines: list[str], whys: list[str]) -> tuple[list[str], list[str]]:
    """The doc's rows and whys with this run's replacing those of the same model and mode (a partial run
    keeps the rest), in the order of MODELS × MODES."""
    def key_row(line: str) -> tuple[str, str]:
        cells = [c.strip() for c in line.split("|")]
        return cells[1], cells[2]

    def key_why(line: str) -> tuple[str, str]:
        model, mode = line[2:].split(":", 1)[0].split(", ")
        return model, mode

    old = DOC.read_text().splitlines() if DOC.exists() else []
    rows = {key_row(r): r for r in old if r.startswith("| ") and not r.startswith("| model")}
    why = {key_why(w): w for w in old if w.startswith("- ") and ", " in w.split(":", 1)[0]}
    rows.update({key_row(r): r for r in lines if r.startswith("| ") and not r.startswith("| model")})
    why.update({key_why(w): w for w in whys})
    order = [(model, mode) for _, model in MODELS for mode in MODES]
    return ([rows[k] for k in order if k in rows], [why[k] for k in order if k in why])


def _write(lines: list[str], whys: list[str], missing: list[str]) -> None:
    head = [r for r in lines if not r.startswith("| ") or r.startswith("| model")]
    rows, whys = _kept(lines, whys)
    out = [*head, *rows, "", "Why each winner won (measured figures, from report.json's `why`):", "", *whys, ""]
    if missing:
        out += [f"Not run (baseline not cached; `modelpress tasks` trains it): {', '.join(missing)}.", ""]
    DOC.write_text("\n".join(out))


if __name__ == "__main__":
    main()
