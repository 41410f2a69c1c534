"""Apply a recipe to a model on a task, measuring after every step; export, deploy and re-measure.

`compress_` is the one-step, in-place call; `run` is the measured many-step pipeline that writes the
artifact, the ONNX model, report.json and report.html.
"""

from __future__ import annotations

import contextlib
import copy
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from modelpress.artifact import folder_bytes, save
from modelpress.context import DeployTarget, StepContext, StepLog
from modelpress.errors import BadInputError, CompressionError, bad_value, is_int
from modelpress.measure import measure, measure_onnx
from modelpress.measure._model import baked_eval_copy, batch_of
from modelpress.measure.latency import time_interleaved
from modelpress.measure.runtime import ort_predict
from modelpress.measure.stats import Stats
from modelpress.pipeline.deploy import export_deployed
from modelpress.pipeline.outdir import OutputFolder, check_folder
from modelpress.pipeline.recipe import Recipe, RecipeStep
from modelpress.pipeline.resolve import check_fits, check_model_finite, nonfinite_outputs, nonfinite_weights
from modelpress.pipeline.steps import StepConfig, kind_of
from modelpress.select import Selector
from modelpress.source import get_source
from modelpress.tasks.task import Task
from modelpress.tasks.train import torch_predict

__all__ = ["RUNTIMES", "RUN_OUTPUTS", "MeasureSettings", "RunResult", "compress_", "run"]


RUNTIMES = ("auto", "onnxruntime", "openvino", "executorch")  # where the deployed model may run


@dataclass(frozen=True)
class MeasureSettings:
    """How latency is measured: intra-op ``threads``, examples per forward (``batch_size``), timed ``runs``,
    and the deployment ``runtime``: ``auto`` (measure the candidates of onnxruntime and, where installed,
    OpenVINO and ExecuTorch, keep the best), ``onnxruntime``, ``openvino`` or ``executorch`` (only that
    runtime's candidates)."""

    threads: int = 1
    batch_size: int = 1
    warmup: int = 5
    runs: int = 30
    runtime: str = "auto"

    def __post_init__(self) -> None:
        for name, low in (("threads", 1), ("batch_size", 1), ("warmup", 0), ("runs", 1)):
            value = getattr(self, name)
            if not is_int(value, low):
                raise bad_value(name, "MeasureSettings", f"an int ≥ {low}", value)
        if self.runtime not in RUNTIMES:
            raise bad_value("runtime", "MeasureSettings", f"one of {list(RUNTIMES)}", self.runtime)
        if self.runtime == "openvino":
            from modelpress.measure.openvino_runtime import require_openvino

            require_openvino("runtime openvino")  # a clear error up front, not after the steps ran
        if self.runtime == "executorch":
            from modelpress.measure.executorch_runtime import require_executorch

            require_executorch("runtime executorch")

    def timing(self) -> dict[str, int]:
        """The keyword arguments of `modelpress.measure.measure`: threads, batch_size, warmup, runs."""
        return {"threads": self.threads, "batch_size": self.batch_size, "warmup": self.warmup, "runs": self.runs}


def compress_(
    model: nn.Module,
    step: StepConfig | RecipeStep,
    *,
    select: Selector | None = None,
    task: Task | None = None,
    progress: bool = True,
    seed: int = 0,
    reference: nn.Module | None = None,
    baseline: Stats | None = None,
    target: DeployTarget | None = None,
) -> StepLog:
    """Apply one step to ``model`` in place and return its log (what it did, what it skipped).

    A step that builds a new model instead (``Distill`` with a new student) leaves ``model`` as it was
    and returns the new one in ``log.model``.

    ``reference``: the model to learn from or compare with (the teacher of ``Distill`` and of
    ``FineTune(distill=True)``; never modified); ``baseline`` its measured stats; ``target`` the
    deployment setting that steps deciding by timing time in (default: auto runtime, batch 1, 1 thread).
    """
    if isinstance(step, RecipeStep):
        select = select if select is not None else step.selector
        step = step.config
    kind = kind_of(step)
    ctx = StepContext(task=task, select=select, progress=progress, seed=seed, reference=reference,
                      baseline=baseline, target=target or DeployTarget())
    return kind.apply(model, step, ctx)


@dataclass
class RunResult:
    """What `run` produced: the compressed model, the stats before/after each step, and the report."""

    model: nn.Module
    baseline: Stats
    steps: list[dict[str, Any]]
    compressed: Stats
    deployed: Stats | None
    report: dict[str, Any] = field(default_factory=dict)
    out: Path | None = None


def run(
    recipe: Recipe,
    task: Task,
    *,
    model: nn.Module | None = None,
    out: str | Path | None = None,
    settings: MeasureSettings = MeasureSettings(),
    progress: bool = True,
    seed: int = 0,
    deploy: bool = True,
    baseline: Stats | None = None,
    command: str | None = None,
    model_name: str | None = None,
) -> RunResult:
    """Apply ``recipe`` to a copy of ``model`` (default: the task's trained baseline), measuring after each step.

    The caller's model is never modified. With ``out``, writes ``out/model/`` (the artifact),
    ``out/model.onnx`` (the deployed model, when exportable), ``out/report.json`` and ``out/report.html``.
    A step that fails at run time (`CompressionError`) is rolled back and reported; bad input raises
    `BadInputError` before any work is done where it can be detected up front.
    ``baseline``: the model's `measure` under ``settings``, when the caller already has it (several
    recipes on one model); measured here when None. ``command`` (default: this process's command line)
    and ``model_name`` (default: from the model's source) are recorded in the report.

    ``out`` is checked before any work: it must be new, empty, or written by modelpress with every
    file it would replace unchanged (`modelpress.pipeline.outdir`); a run that stops leaves it marked
    incomplete. A step whose outputs or weights turn NaN / Inf is rolled back like a failed step.
    """
    from modelpress.pipeline.report import about_run, build_report, write_report

    command = command if command is not None else shlex.join(sys.argv)
    original, folder = _start(model, task, out, command, progress)
    out_dir = folder.path if folder is not None else None
    reference, work = baked_eval_copy(original), copy.deepcopy(original)  # the caller's model stays untouched
    kw = settings.timing()
    target = DeployTarget(runtime=settings.runtime, batch_size=settings.batch_size, threads=settings.threads)
    if baseline is None:
        _say(progress, f"measuring the baseline on `{task.name}` ...")
        baseline = measure(work, task, **kw)
    step_rows: list[dict[str, Any]] = []
    # the model after each step but the last, baked as shipped (no mask parametrizations), to time them all
    # side by side at the end
    earlier: list[nn.Module] = []
    for i, step in enumerate(recipe.steps):
        if i > 0:
            earlier.append(baked_eval_copy(work))
        _say(progress, f"step {i + 1}/{len(recipe.steps)}: {step.key} ...")
        backup = copy.deepcopy(work)
        t0 = time.perf_counter()
        try:
            log = compress_(work, step, task=task, progress=progress, seed=seed, reference=reference,
                            baseline=baseline, target=target)
            work = log.model if log.model is not None else work  # a step may build a new model (a student)
            _check_step_finite(work, step.key, task)
            error = None
        except CompressionError as e:
            work, log, error = backup, StepLog(step.key, step.to_dict()[step.key]), str(e)
        seconds = time.perf_counter() - t0
        stats = measure(work, task, **kw)
        row = log.to_dict() | {"stats": stats.to_dict(), "seconds": round(seconds, 2)}
        if error:
            row["error"] = f"rolled back: {error}"
        step_rows.append(row)
        _say(progress, f"  {step.key}: metric {stats.metric:.4f}, {stats.size_bytes:,} bytes")
    compressed = Stats.from_dict(step_rows[-1]["stats"]) if step_rows else baseline
    if folder is not None:
        with folder.write("model"):
            save(work, folder.path / "model", steps=recipe.to_list(), overwrite=True)
    with tempfile.TemporaryDirectory(prefix="modelpress-") as tmp:
        onnx_path = (out_dir or Path(tmp)) / "model.onnx"
        deployed, deploy_info = None, {}
        if deploy:
            with folder.write(*_ONNX_FILES) if folder is not None else contextlib.nullcontext():
                deployed, deploy_info = _deploy(work, recipe, task, onnx_path, settings, compressed, seed,
                                                reference=reference, target=target)
        stages = [reference, *earlier, baked_eval_copy(work)]
        shipped = deploy_info.get("shipped", {}).get("runtime", "onnxruntime")
        interleaved = _time_side_by_side(stages, onnx_path if deployed else None, task, settings, shipped)
        fid = _deployed_fidelity(onnx_path, shipped, reference, task, settings.threads) if deployed else None
    report = build_report(task, recipe, baseline, step_rows, compressed, deployed, deploy_info, interleaved)
    if fid is not None:  # to the fp32 model the recipe started from, on the test split
        report["deployed"]["fidelity"] = fid.to_dict()
    report.update(about_run(original, model_name, command, seed))
    if folder is not None:
        # measured sizes come from a bare save; the written artifact also records the recipe in its manifest
        report["artifact"] = {"path": "model", "size_bytes": folder_bytes(folder.path / "model")}
        with folder.write("report.json", "report.html"):
            write_report(report, folder.path)
        folder.finish()
    return RunResult(work, baseline, step_rows, compressed, deployed, report, out_dir)


def _start(model: nn.Module | None, task: Task, out: str | Path | None, command: str,
           progress: bool) -> tuple[nn.Module, OutputFolder | None]:
    """Everything checked before any work: the output folder (before the baseline is loaded, or trained),
    the model's source, finite weights, that it runs on the task; then the output folder is opened."""
    if out is not None:
        check_folder(out, RUN_OUTPUTS)
    original = model if model is not None else task.model()
    if out is not None and get_source(original) is None:
        raise BadInputError(
            "`model` carries no source, so its artifact could not be rebuilt without pickle. Fix: build it "
            "from a built-in name, `package.module:function` or a Hugging Face folder (see modelpress.source)."
        )
    check_model_finite(original, "`model`")
    check_fits(original, task)
    folder = _prepare_out(out, original, command)
    if folder is not None and folder.note:
        _say(progress, folder.note)
    return original, folder


def _check_step_finite(work: nn.Module, key: str, task: Task) -> None:
    """Raise CompressionError (the step is rolled back) when ``work`` holds or outputs NaN / Inf."""
    why = nonfinite_weights(work) or nonfinite_outputs(work, task.calibration)
    if why:
        raise CompressionError(f"step `{key}` made the model non-finite: {why}.")


RUN_OUTPUTS = ("model", "model.onnx", "model.onnx.data", "model.xml", "model.bin", "model.pte", "report.json",
               "report.html")
# the exporter writes .data beside a model over 2 GB; model.xml / .bin where OpenVINO runs the deployed graph,
# model.pte where ExecuTorch does
_ONNX_FILES = ("model.onnx", "model.onnx.data", "model.xml", "model.bin", "model.pte")


def _prepare_out(out: str | Path | None, model: nn.Module, command: str) -> OutputFolder | None:
    """Check and open the output folder before any work; never over a user's file or the input artifact."""
    if out is None:
        return None
    out_dir = Path(out)
    loaded_from = getattr(model, "_modelpress_loaded_from", None)
    if loaded_from is not None and Path(loaded_from).resolve() == (out_dir / "model").resolve():
        raise BadInputError(
            f"`--out` folder `{out_dir}` holds the input artifact, which the run would overwrite. "
            "Fix: choose another output folder."
        )
    return OutputFolder.open(out_dir, RUN_OUTPUTS, command=command)


def _deploy(work, recipe, task, path, settings, compressed, seed, *, reference=None,
            target=None) -> tuple[Stats | None, dict[str, Any]]:
    """Export to ONNX, let steps rewrite it (e.g. int8; judged against ``reference``, timed in ``target``),
    measure it in the runtime that won (onnxruntime, or OpenVINO: the IR written beside ``path``)."""
    ir = [Path(path).with_suffix(".xml"), Path(path).with_suffix(".bin"), Path(path).with_suffix(".pte")]
    for f in ir:  # an IR or a program of an earlier run must not pass for this run's
        f.unlink(missing_ok=True)
    try:
        info = export_deployed(work, recipe.steps, task, path, seed=seed, reference=reference, target=target)
        kw = {"macs": compressed.macs, "threads": settings.threads, "batch_size": settings.batch_size,
              "warmup": settings.warmup, "runs": settings.runs}
        if info["shipped"]["runtime"] == "openvino":
            from modelpress.measure import measure_openvino

            deployed = measure_openvino(Path(path).with_suffix(".xml"), task, **kw)
        elif info["shipped"]["runtime"] == "executorch":
            from modelpress.measure import measure_executorch

            deployed = measure_executorch(Path(path).with_suffix(".pte"), task, **kw,  # same weights as the model
                                          params=(compressed.params, compressed.nonzero_params))
        else:
            deployed = measure_onnx(path, task, **kw)
    except CompressionError as e:
        for f in (Path(path), *ir):
            f.unlink(missing_ok=True)
        return None, {"error": str(e)}
    return deployed, info


def _time_side_by_side(stages: list[nn.Module], onnx_path: Path | None, task: Task,
                       settings: MeasureSettings, runtime: str = "onnxruntime") -> dict[str, Any]:  # fmt: skip
    """The baseline (``stages[0]``), the model after each step (the last one is ``compressed``), all baked
    eval-mode copies as the artifact ships them, and the deployed model (onnxruntime, or OpenVINO), timed
    interleaved in one process. Each step's own ``latency_ms`` is timed alone, at another moment; these
    ratios are the ones to compare."""
    inputs = batch_of(task.test, settings.batch_size)
    predicts = [torch_predict(m) for m in stages]
    if onnx_path is not None:
        predicts.append(_deployed_predict(onnx_path, runtime, settings.threads))
    lat = time_interleaved(predicts, inputs, threads=settings.threads, warmup=settings.warmup, runs=settings.runs)
    ms = [x.median_ms for x in lat]
    names = ["baseline", "compressed"] + (["deployed"] if onnx_path is not None else [])
    picked = [ms[0], ms[len(stages) - 1]] + ms[len(stages):]  # baseline, the last stage, deployed
    return {
        "threads": settings.threads,
        "batch_size": settings.batch_size,
        "median_ms": {k: round(v, 4) for k, v in zip(names, picked, strict=True)},
        "ratio_vs_baseline": {k: round(v / ms[0], 4) for k, v in zip(names, picked, strict=True)},
        "steps_ratio_vs_baseline": [round(v / ms[0], 4) for v in ms[1 : len(stages)]],
    }


def _deployed_predict(onnx_path: Path, runtime: str, threads: int):
    """The predict of the shipped file: the IR beside ``onnx_path`` where OpenVINO won, the .pte where
    ExecuTorch won, else the ONNX graph in onnxruntime."""
    if runtime == "openvino":
        from modelpress.measure.openvino_runtime import ov_predict

        return ov_predict(onnx_path.with_suffix(".xml"), threads=threads)
    if runtime == "executorch":
        from modelpress.measure.executorch_runtime import pte_predict

        return pte_predict(onnx_path.with_suffix(".pte"), threads=threads)
    return ort_predict(onnx_path, threads=threads)


def _deployed_fidelity(onnx_path: Path, runtime: str, reference: nn.Module, task: Task, threads: int):
    """Fidelity (top-1 agreement, output cosine, SQNR) of the shipped file to the fp32 model the recipe
    started from, on the test split."""
    from modelpress.measure.fidelity import fidelity

    inputs = task.test.inputs
    return fidelity(_deployed_predict(onnx_path, runtime, threads)(inputs), torch_predict(reference)(inputs))


def _say(progress: bool, msg: str) -> None:
    if progress:
        print(msg, flush=True)
