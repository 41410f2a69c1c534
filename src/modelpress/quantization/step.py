"""The `Quantize` step: ``apply_quantize`` (PTQ / QAT, in place) and ``deploy_quantize`` (the ONNX form)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from modelpress.context import StepContext, StepLog
from modelpress.quantization.config import Quantize
from modelpress.quantization.deploy import deploy_onnx
from modelpress.quantization.fold import fold_batchnorm
from modelpress.quantization.modules import _Quantized
from modelpress.quantization.ptq import (
    Plan,
    calibrate_inputs,
    calibration_split,
    plan_layers,
    quantized_module,
    swap,
)
from modelpress.quantization.qat import FakeQuantLayer
from modelpress.quantization.sensitivity import keep_float_until, layer_sensitivity
from modelpress.tasks.task import Split, Task

__all__ = ["apply_quantize", "deploy_quantize"]

_SIXTEEN_BIT = ("16 bits is a storage format in this step: weights are stored in 16 bits and computed in fp32. "
                "On CPUs without AMX / AVX512-FP16 (AVX2 machines) 16-bit compute in PyTorch is 5-8x slower "
                "than fp32 (architecture §8); the measured ratio on this machine is in `compute_16bit_vs_fp32`.")


def _time_16bit(model: nn.Module, task: Task) -> dict[str, float]:
    """Latency of 16-bit compute relative to fp32 for this model at batch 1 (median of 5 interleaved runs),
    so the report says what 16-bit compute costs on *this* CPU instead of assuming it."""
    import copy

    from modelpress.measure.latency import time_interleaved
    from modelpress.tasks.train import torch_predict

    def cast(predict, dtype):
        return lambda inputs: predict(tuple(t.to(dtype) if t.is_floating_point() else t for t in inputs))

    predicts = {"fp32": torch_predict(model, 1)}
    for name, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        predicts[name] = cast(torch_predict(copy.deepcopy(model).to(dtype), 1), dtype)
    try:
        lat = time_interleaved(list(predicts.values()), task.example_inputs, threads=1, warmup=1, runs=5)
    except Exception:  # noqa: BLE001 - a model whose ops lack 16-bit kernels: report, do not fail the step
        return {}
    base = lat[0].median_ms
    return {name: round(t.median_ms / base, 3) for name, t in zip(predicts, lat, strict=True) if name != "fp32"}


def _needs_data(config: Quantize) -> bool:
    return (config.activations == "static" or config.max_drop is not None or config.mode == "qat"
            or config.method == "gptq")


def _gptq_hessians(model: nn.Module, plans: list[Plan], config: Quantize, calib: Split | None,
                   log: StepLog) -> dict[str, torch.Tensor]:
    """Input Hessians of the group-wise Linear layers for ``method: gptq`` (one pass of the float model
    over the calibration split); the other planned layers keep round-to-nearest, recorded in details."""
    if config.method != "gptq" or calib is None:
        return {}
    from modelpress.quantization.gptq import input_hessians

    names = [p.name for p in plans if p.base is nn.Linear and p.spec.granularity == "group"]
    hessians, rows = input_hessians(model, names, calib)
    # GPTQ needs calibration inputs that span each layer's input space: on the digits CNN (256
    # calibration images; fc1 has 512 inputs, fc2's 64 ReLU inputs span 30 directions) it halved fc2's own
    # output error yet raised the model's (0.056 -> 0.068 at group 32). The rows per layer are reported.
    log.details["gptq_calibration_rows"] = rows
    log.details["method"] = "gptq"
    log.details["gptq_layers"] = len(hessians)
    log.details["rtn_layers"] = {p.name: "no calibration batch reached it" if p.name in names else
                                 "not a group-wise Linear" for p in plans if p.name not in hessians}
    return hessians


def _place(model: nn.Module, floats: dict[str, nn.Module], quantized: dict[str, nn.Module],
           config: Quantize, task: Task | None, calib: Split | None, log: StepLog) -> None:
    """Swap the quantized modules in; with ``max_drop``, keep the most sensitive in float (measured)."""
    if config.max_drop is None or task is None or calib is None or not quantized:
        for name, q in quantized.items():
            swap(model, name, q)
        _record_swaps(model, floats, quantized, log)
        return
    base, _, ranked = layer_sensitivity(model, quantized, task, calib)
    for name, q in quantized.items():
        swap(model, name, q)
    drop, kept = keep_float_until(model, floats, ranked, task, calib, base, config.max_drop)
    log.details["sensitivity"] = [{"module": s.module, "drop": round(s.drop, 6), "output_mse": s.output_mse}
                                  for s in ranked]
    log.details["kept_float"] = kept
    log.details["calibration_metric_float"] = base
    log.details["calibration_drop"] = round(drop, 6)
    _record_swaps(model, floats, quantized, log)


def _record_swaps(model: nn.Module, floats: dict[str, nn.Module], quantized: dict[str, nn.Module],
                  log: StepLog) -> None:
    """One `StepLog.swapped` row per layer that is quantized now (those kept float are not)."""
    for name, q in quantized.items():
        if model.get_submodule(name) is q:
            # a pruned layer's class is torch's Parametrized<Cls>: record the class it was built as
            log.swap(name, parametrize.type_before_parametrizations(floats[name]), q)


def _summary(model: nn.Module, config: Quantize, log: StepLog, plans: list[Plan]) -> None:
    quantized = [s.module for s in log.swapped]
    d = log.details
    d["mode"] = config.mode
    d["weight_bits"] = config.weight_bits
    d["activations"] = config.activations
    d["layers_quantized"] = len(quantized)
    d["layers"] = quantized
    d["granularity"] = config.weight_granularity
    d["granularity_fallback"] = [p.name for p in plans if p.spec.granularity != config.weight_granularity
                                 and config.weight_bits is not None]
    d["embeddings_quantized"] = [p.name for p in plans if p.base is nn.Embedding and p.name in quantized]
    d["kept_forward"] = [p.name for p in plans if p.custom_forward and p.name in quantized]
    if config.weight_bits is None:
        d["note"] = _SIXTEEN_BIT
    if not quantized:
        d["changed"] = False
        d["note"] = "no layer quantized" + (f" ({len(log.skipped)} skipped, see skipped)" if log.skipped else
                                            " (the selection names no Linear / Conv2d / Embedding layer)")


def apply_quantize(model: nn.Module, config: Quantize, ctx: StepContext) -> StepLog:
    """Quantize ``model`` in place: swap Linear / Conv2d (/ Embedding) for quantized modules.

    PTQ modes need the task's calibration split for static activations and for ``max_drop``; ``qat``
    also trains on the task's training split (``modelpress.tasks.train.train``). Convs are quantized
    after folding BatchNorm into them. Returns a `StepLog` whose details list the quantized layers, the
    layers kept float (and why), and the sensitivities when measured.
    Raises BadInputError when data is needed but missing or the calibration split is empty.
    """
    log = StepLog("quantize", config.to_dict())
    task = ctx.require_task(f"quantize ({config.mode})") if _needs_data(config) else ctx.task
    calib = calibration_split(task.calibration, config.calibration_size) if task is not None else None
    if config.weight_bits is not None:
        log.details["batchnorm_folded"] = [f"{c} <- {b}" for c, b in fold_batchnorm(model)]
    plans, skipped = plan_layers(model, config, ctx.select)
    log.skipped.extend(skipped)
    static = [p.name for p in plans if p.act == "static"]
    act_qparams: dict[str, tuple[float, int]] = {}
    if static:
        act_qparams = calibrate_inputs(model, static, calib, method=config.observer, percentile=config.percentile)
    floats = {p.name: model.get_submodule(p.name) for p in plans}
    if config.mode == "qat":
        _train_qat(model, plans, act_qparams, config, ctx, task, log)
        quantized = {n: model.get_submodule(n).convert() for n in floats}
        for n, f in floats.items():  # the wrappers trained `floats` in place: put them back for _place
            swap(model, n, f)
    else:
        hessians = _gptq_hessians(model, plans, config, calib, log)
        quantized = {p.name: quantized_module(floats[p.name], p, config, act_qparams, hessians.get(p.name))
                     for p in plans}
    if config.weight_bits is None and task is not None:
        log.details["compute_16bit_vs_fp32"] = _time_16bit(model, task)
    _place(model, floats, quantized, config, task, calib, log)
    model.eval()
    _summary(model, config, log, plans)
    if act_qparams:
        log.details["observer"] = config.observer
    return log


def _train_qat(model: nn.Module, plans: list[Plan], act_qparams: dict[str, tuple[float, int]],
               config: Quantize, ctx: StepContext, task: Task, log: StepLog) -> None:
    """Wrap each planned layer in a `FakeQuantLayer` and fine-tune (straight-through estimator)."""
    from modelpress.tasks.train import train

    for p in plans:
        inner = model.get_submodule(p.name)
        swap(model, p.name, FakeQuantLayer(inner, p.spec, act=p.act, act_init=act_qparams.get(p.name),
                                           learn=config.learn_ranges))
    losses = train(model, task.train, task.loss, epochs=config.epochs, lr=config.lr, schedule=config.schedule,
                   batch_size=task.batch_size, seed=ctx.seed, progress=ctx.progress)
    log.details["qat_losses"] = [round(x, 6) for x in losses]
    log.details["qat_ranges"] = "learned (LSQ)" if config.learn_ranges else "observed (moving min-max)"


def deploy_quantize(onnx_path: Path, model: nn.Module, config: Quantize, ctx: StepContext) -> dict[str, Any]:
    """Rewrite the exported fp32 ONNX file at ``onnx_path`` (in place) into the fastest accurate form.

    Candidates (see `modelpress.quantization.deploy.deploy_onnx`) are built with onnxruntime's quantizers
    or MatMulNBits from our codes, checked against their graphs, judged by fidelity to ``ctx.reference``
    (the fp32 model the recipe started from) on held-out training examples and timed in ``ctx.target``.
    Returns details for report.json: ``format`` (derived from the shipped graph), ``candidate``, ``why``,
    ``candidates``.
    """
    details = deploy_onnx(Path(onnx_path), model, config, ctx)
    if config.weight_bits is None:
        if details.get("runtime") == "openvino":
            p = details["executed"]["precision"]
            details["note"] = (f"16-bit compute deployed: OpenVINO runs the model in {p} on this CPU, measured "
                               "faster at the fidelity floor (see `why`); the artifact stores 16-bit weights.")
        else:
            details["note"] = _SIXTEEN_BIT + " The ONNX file keeps fp32 compute (onnxruntime folds the Casts)."
    emb = [n for n, m in model.named_modules() if isinstance(m, _Quantized) and m.meta["kind"] == "embedding"]
    if emb:
        gathers = details.get("ops", {}).get("GatherBlockQuantized", 0)
        details["embeddings"] = (
            f"{len(emb)} quantized in the artifact; {gathers} of them gathered from their codes in the "
            "deployed file (GatherBlockQuantized: only the gathered rows are dequantized)"
            + ("" if gathers == len(emb) else "; the others kept fp32 there (see the candidate's notes: "
               "the chosen form or the table's shape has no quantized gather)"))
    return details
