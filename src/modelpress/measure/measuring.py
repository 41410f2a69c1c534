"""`measure` and `measure_onnx`: every figure of `Stats` for one model on one task."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from modelpress.errors import bad_value
from modelpress.measure._model import baked_view, batch_of, check_positive_int
from modelpress.measure.latency import time_one
from modelpress.measure.macs import count_baked_macs
from modelpress.measure.memory import peak_forward_bytes, peak_onnx_bytes
from modelpress.measure.onnx_size import onnx_bytes, onnx_params
from modelpress.measure.runtime import ort_predict
from modelpress.measure.size import artifact_bytes, count_baked_params
from modelpress.measure.stats import Stats
from modelpress.tasks.task import Task

__all__ = ["measure", "measure_executorch", "measure_onnx", "measure_openvino"]


def _check_common(task: object, threads: int, batch_size: int, warmup: int, runs: int, owner: str) -> None:
    if not isinstance(task, Task):
        raise bad_value(
            "task", owner, "a modelpress Task", type(task).__name__, "use modelpress.tasks.get(name)."
        )
    check_positive_int(threads, "threads", owner)
    check_positive_int(batch_size, "batch_size", owner)
    check_positive_int(warmup, "warmup", owner, minimum=0)
    check_positive_int(runs, "runs", owner)


def _progress(enabled: bool, total: int, desc: str):
    from tqdm.auto import tqdm  # tqdm: the progress bar every other modelpress loop uses

    return tqdm(total=total, desc=desc, disable=None if enabled else True, leave=False)


def measure(
    model: nn.Module,
    task: Task,
    *,
    threads: int = 1,
    batch_size: int = 1,
    warmup: int = 5,
    runs: int = 30,
    progress: bool = False,
) -> Stats:
    """Measure ``model`` on ``task`` in torch.

    - size: bytes of the artifact ``modelpress.artifact.save`` writes for it, on disk (from the
      in-memory encode; nothing is written);
    - params / nonzero params of the model as it deploys (see `modelpress.measure.size`);
    - MACs per example of the model as it deploys (`count_macs`);
    - latency: median / p90 of ``runs`` forward passes on ``batch_size`` test examples (repeated if the
      test split is smaller), ``threads`` intra-op threads, after ``warmup`` passes;
    - peak memory of one such forward pass, weights included (`peak_forward_bytes`);
    - the task's metric on ``task.test`` and every ``task.extra_metrics`` entry.

    Everything runs on the baked model in eval mode: a copy when ``model`` holds parametrizations
    (pruning masks), else ``model`` itself, read only — no needless copy of a big model. ``model`` (its
    weights, parametrizations and train/eval modes) is left as it was. Raises `BadInputError` for bad
    arguments.
    """
    from modelpress.tasks.train import torch_predict

    if not isinstance(model, nn.Module):
        raise bad_value("model", "measure", "a torch.nn.Module", type(model).__name__)
    _check_common(task, threads, batch_size, warmup, runs, "measure")
    modes = {m: m.training for m in model.modules()}
    bar = _progress(progress, 6, f"measure {task.name}")
    try:
        bar.set_postfix_str("size")
        baked = baked_view(model)
        size = artifact_bytes(baked)  # a baked copy keeps the source; masks are already applied
        bar.update()
        baked.eval()
        n_params, n_nonzero = count_baked_params(baked)
        macs = count_baked_macs(baked, task.example_inputs)
        bar.update()
        bar.set_postfix_str("latency")
        inputs = batch_of(task.test, batch_size)
        lat = time_one(lambda x: baked(*x), inputs, threads=threads, warmup=warmup, runs=runs)
        bar.update()
        bar.set_postfix_str("memory")
        peak = peak_forward_bytes(baked, inputs)
        bar.update()
        bar.set_postfix_str("metric")
        metric = task.metric(torch_predict(baked), task.test)
        bar.update()
        extra = {name: float(fn(baked)) for name, fn in task.extra_metrics.items()}
        bar.update()
    finally:
        bar.close()
        for m, training in modes.items():  # torch_predict or a metric may have switched modes
            m.train(training)
    return Stats(
        size_bytes=size,
        params=n_params,
        nonzero_params=n_nonzero,
        macs=macs,
        latency_ms=lat.median_ms,
        latency_p90_ms=lat.p90_ms,
        peak_mem_bytes=peak,
        metric=float(metric),
        runtime="torch",
        threads=threads,
        batch_size=batch_size,
        extra=extra,
    )


def measure_onnx(
    path: str | Path,
    task: Task,
    *,
    macs: int = 0,
    threads: int = 1,
    batch_size: int = 1,
    warmup: int = 5,
    runs: int = 30,
) -> Stats:
    """Measure the ONNX model at ``path`` on ``task`` in onnxruntime (runtime ``"onnxruntime"``).

    - size: bytes of the ``.onnx`` file plus any external-data files it references;
    - params / nonzero params: from the ONNX initializers (see `modelpress.measure.onnx_size`);
    - MACs: ``macs`` as given (count them on the torch model with `count_macs`; ONNX has no counter);
    - latency and metric as in `measure`, through `ort_predict`; ``extra`` stays empty (extra metrics
      take a torch model);
    - peak memory: the estimate of `peak_onnx_bytes`.

    Raises `BadInputError` when the file is missing or not ONNX, or for bad arguments.
    """
    _check_common(task, threads, batch_size, warmup, runs, "measure_onnx")
    check_positive_int(macs, "macs", "measure_onnx", minimum=0)
    return _deployed_stats(ort_predict(path, threads=threads), task, onnx_bytes(path), onnx_params(path), macs,
                           lambda inputs: peak_onnx_bytes(path, inputs), "onnxruntime",
                           threads=threads, batch_size=batch_size, warmup=warmup, runs=runs)


def _deployed_stats(predict, task: Task, size: int, params: tuple[int, int], macs: int, peak_of,
                    runtime: str, *, threads: int, batch_size: int, warmup: int, runs: int) -> Stats:
    """The `Stats` of a deployed file from its predict function: latency on ``batch_size`` test examples,
    peak memory from ``peak_of(inputs)`` (bytes), the task's metric on the test split."""
    inputs = batch_of(task.test, batch_size)
    lat = time_one(predict, inputs, threads=threads, warmup=warmup, runs=runs)
    return Stats(
        size_bytes=size,
        params=params[0],
        nonzero_params=params[1],
        macs=macs,
        latency_ms=lat.median_ms,
        latency_p90_ms=lat.p90_ms,
        peak_mem_bytes=peak_of(inputs),
        metric=float(task.metric(predict, task.test)),
        runtime=runtime,
        threads=threads,
        batch_size=batch_size,
    )


def measure_openvino(
    path: str | Path,
    task: Task,
    *,
    macs: int = 0,
    threads: int = 1,
    batch_size: int = 1,
    warmup: int = 5,
    runs: int = 30,
    precision: str | None = None,
) -> Stats:
    """Measure the OpenVINO IR (``model.xml`` + ``model.bin``) or ONNX file at ``path`` on ``task`` in
    OpenVINO's CPU plugin, compiled by `modelpress.measure.openvino_runtime.compile_openvino`
    (``precision`` None: the one recorded in the IR, else f32). The runtime is named with what the
    compiled model executes: ``"openvino f32"``, ``"openvino bf16"``, ``"openvino int8"`` ...

    - size: bytes of the .xml and .bin (or the .onnx file);
    - params / nonzero params: from the model's constants (`ir_params`);
    - MACs: ``macs`` as given (count them on the torch model);
    - latency and metric as in `measure`; peak memory: a lower bound, the weight file's bytes plus one
      call's inputs and outputs (OpenVINO does not report its allocations).

    Raises `BadInputError` when the file is missing, OpenVINO is not installed or arguments are bad;
    `CompressionError` when OpenVINO cannot compile the model.
    """
    from modelpress.measure import openvino_runtime as ovr

    _check_common(task, threads, batch_size, warmup, runs, "measure_openvino")
    check_positive_int(macs, "macs", "measure_openvino", minimum=0)
    compiled = ovr.compile_openvino(path, threads=threads, precision=precision)
    executed = ovr.executed_format(compiled)
    predict = ovr.predict_compiled(compiled, "measure_openvino")
    weights = Path(path).with_suffix(".bin") if Path(path).suffix == ".xml" else Path(path)

    def peak_of(inputs):
        return weights.stat().st_size + sum(t.numel() * t.element_size() for t in (*inputs, predict(inputs)))

    return _deployed_stats(predict, task, ovr.ir_bytes(path), ovr.ir_params(path), macs, peak_of,
                           f"openvino {executed.label}", threads=threads, batch_size=batch_size, warmup=warmup,
                           runs=runs)


def measure_executorch(
    path: str | Path,
    task: Task,
    *,
    macs: int = 0,
    threads: int = 1,
    batch_size: int = 1,
    warmup: int = 5,
    runs: int = 30,
    params: tuple[int, int] = (0, 0),
) -> Stats:
    """Measure the ExecuTorch program (``.pte``) at ``path`` on ``task`` in the ExecuTorch runtime (its
    Python bindings, ``threads`` threads; `modelpress.measure.executorch_runtime.pte_predict`). The
    runtime is named ``"executorch"``.

    - size: bytes of the .pte file (weights, program and XNNPACK payload are all in it);
    - params / nonzero params: ``params`` as given (those of the model the program was exported from;
      a .pte's constants, partly inside the XNNPACK payload, are not enumerated; 0 means not counted);
    - MACs: ``macs`` as given (count them on the torch model);
    - latency and metric as in `measure` (the program runs its fixed export batch; larger batches in
      chunks); peak memory: a lower bound, the file's bytes plus one call's inputs and outputs.

    Raises `BadInputError` when the file is missing, ExecuTorch is not installed or arguments are bad;
    `CompressionError` when ExecuTorch cannot load the program.
    """
    from modelpress.measure import executorch_runtime as etr

    _check_common(task, threads, batch_size, warmup, runs, "measure_executorch")
    check_positive_int(macs, "macs", "measure_executorch", minimum=0)
    predict = etr.pte_predict(path, threads=threads)
    size = etr.pte_bytes(path)

    def peak_of(inputs):
        return size + sum(t.numel() * t.element_size() for t in (*inputs, predict(inputs)))

    return _deployed_stats(predict, task, size, params, macs, peak_of, "executorch", threads=threads,
                           batch_size=batch_size, warmup=warmup, runs=runs)
