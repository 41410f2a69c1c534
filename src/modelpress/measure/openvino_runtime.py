"""OpenVINO as a second CPU runtime: ONNX → IR, a `Predict` with a precision hint, the executed format.

Why OpenVINO beside onnxruntime (measured, architecture §8): on Intel / AMD CPUs with AVX-512 its CPU plugin
runs the same graphs faster for many shapes (MiniLM fp32 in bf16, resnet-s int8 at batch 32), but not
all (a 0.9 ms CNN at batch 1 pays its per-call overhead), so it is one more candidate to time, never a
fixed choice. It is an optional dependency (``pip install 'modelpress[openvino]'``): without it
`openvino_available` is False and callers skip its candidates with a note.

Precision: the CPU plugin computes in its ``INFERENCE_PRECISION_HINT`` — by default bf16 on a CPU with
AVX512-BF16 / AMX, f32 elsewhere, and it silently falls back (a f16 hint runs in bf16 on a CPU without
AVX512-FP16). So the precision is always set explicitly here, and what was executed is read back from
the compiled model (`executed_format`), never assumed from the hint.

>>> xml = to_ir("model.onnx", "out/model.xml")                       # doctest: +SKIP
>>> predict = ov_predict(xml, threads=1, precision="bf16")            # doctest: +SKIP
>>> executed_format(compile_openvino(xml, precision="bf16")).label    # doctest: +SKIP
'bf16'
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from modelpress.errors import BadInputError, CompressionError, bad_value
from modelpress.measure._model import check_positive_int
from modelpress.measure.optional import is_installed, not_installed
from modelpress.measure.runtime import chunked_predict
from modelpress.tasks.task import Predict

__all__ = [
    "CAPABILITY_16",
    "INSTALL_HINT",
    "PRECISIONS",
    "ExecutedFormat",
    "OpenVINOForm",
    "compile_openvino",
    "executed_format",
    "ir_bytes",
    "ir_params",
    "openvino_available",
    "openvino_capabilities",
    "openvino_forms",
    "ov_predict",
    "predict_compiled",
    "profile_layers",
    "require_openvino",
    "sixteen_bit_precisions",
    "stored_precision",
    "to_ir",
]

PRECISIONS = ("f32", "bf16", "f16")
_PRECISION_KEY = ("modelpress", "inference_precision")
INSTALL_HINT = "pip install 'modelpress[openvino]' (or pip install openvino)"

# Runtime-model layer types that do the arithmetic (matrix products, convolutions): their runtime
# precision is the deployed format; reorders, reshapes and constants follow it.
_COMPUTE = frozenset({"FullyConnected", "Convolution", "Deconvolution", "MatMul", "GroupConvolution",
                      "ScaledDotProductAttention", "RNNSeq", "RNNCell"})
# OpenVINO's runtime precisions as modelpress format names.
_NAMES = {"u8": "int8", "i8": "int8", "u4": "int4", "i4": "int4", "f32": "f32", "bf16": "bf16", "f16": "f16"}


def openvino_available() -> bool:
    """Whether the ``openvino`` package is installed (its import is not attempted: it is slow)."""
    return is_installed("openvino")


def require_openvino(owner: str) -> Any:
    """The ``openvino`` module; `BadInputError` naming ``owner`` and the install command when it is
    not installed (on the command line: exit code 2)."""
    if not openvino_available():
        raise not_installed(owner, "OpenVINO", INSTALL_HINT)
    import openvino

    return openvino


@lru_cache(maxsize=1)
def _core() -> Any:
    """One OpenVINO Core per process (it loads the CPU plugin once)."""
    return require_openvino("the OpenVINO runtime").Core()


def openvino_capabilities() -> tuple[str, ...]:
    """What OpenVINO's CPU plugin reports it can do here (``OPTIMIZATION_CAPABILITIES``, e.g.
    ``('BF16', 'FP32', 'INT8', ...)``). Raises `BadInputError` when OpenVINO is not installed."""
    return tuple(str(c) for c in _core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def _check_precision(precision: object, owner: str) -> str:
    if precision not in PRECISIONS:
        raise bad_value("precision", owner, f"one of {list(PRECISIONS)}", precision)
    return str(precision)


def _check_model_file(path: str | Path, owner: str) -> Path:
    p = Path(path)
    if p.suffix not in (".xml", ".onnx"):
        raise bad_value("path", owner, "an OpenVINO IR (.xml, with its .bin beside it) or an .onnx file", str(p))
    if not p.is_file():
        raise BadInputError(f"model file `{p}` does not exist. Fix: export it first (export_onnx, to_ir).")
    if p.suffix == ".xml" and not p.with_suffix(".bin").is_file():
        raise BadInputError(f"the weights `{p.with_suffix('.bin')}` of IR `{p}` do not exist. "
                            "Fix: keep model.xml and model.bin together.")
    return p


def to_ir(onnx_path: str | Path, xml_path: str | Path, *, precision: str | None = None,
          compress_to_fp16: bool = False) -> Path:
    """Convert the ONNX file ``onnx_path`` to OpenVINO IR: write ``xml_path`` and the ``.bin`` beside it.

    ``precision`` (``f32`` / ``bf16`` / ``f16``): the inference precision the model was chosen for; it is
    recorded in the IR (rt_info ``modelpress/inference_precision``) because OpenVINO's own default
    depends on the CPU, and `compile_openvino` uses it when no precision is passed.

    Quantize / Dequantize pairs (modelpress's int8 QDQ graph, QAT scales and layers kept float included)
    become OpenVINO FakeQuantize nodes, which its CPU plugin runs as int8 kernels. Weights stay f32
    unless ``compress_to_fp16`` (OpenVINO's own default is to round them to fp16 — a storage choice
    that changes f32 outputs, so here it is explicit). Returns the .xml path.
    Raises `BadInputError` when the ONNX file is missing or OpenVINO is not installed,
    `CompressionError` when OpenVINO cannot convert the graph.
    """
    ov = require_openvino("to_ir")
    src = Path(onnx_path)
    if not src.is_file():
        raise BadInputError(f"ONNX file `{src}` does not exist. Fix: export the model first (export_onnx).")
    dst = Path(xml_path)
    if dst.suffix != ".xml":
        raise bad_value("xml_path", "to_ir", "a path ending in .xml", str(dst))
    if precision is not None:
        _check_precision(precision, "to_ir")
    try:
        model = ov.convert_model(str(src))
    except Exception as exc:  # OpenVINO raises its own OpConversionFailure / GeneralFailure types
        raise CompressionError(f"OpenVINO cannot convert `{src}`: {str(exc).strip()[:400]}") from exc
    if precision is not None:
        model.set_rt_info(precision, list(_PRECISION_KEY))
    dst.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(dst), compress_to_fp16=compress_to_fp16)
    return dst


def ir_bytes(xml_path: str | Path) -> int:
    """Bytes on disk of an IR: the .xml plus its .bin."""
    p = _check_model_file(xml_path, "ir_bytes")
    return p.stat().st_size + (p.with_suffix(".bin").stat().st_size if p.suffix == ".xml" else 0)


def stored_precision(model: Any) -> str | None:
    """The inference precision `to_ir` recorded in an ``openvino.Model`` (None when there is none)."""
    key = list(_PRECISION_KEY)
    if not model.has_rt_info(key):
        return None
    value = model.get_rt_info(key).astype(str)
    return value if value in PRECISIONS else None


def _dequantized(node: Any) -> bool:
    """``node`` is an integer constant converted to float (behind any Subtract of its zero point)."""
    while node.get_type_name() == "Subtract":
        node = node.input_value(0).get_node()
    if node.get_type_name() != "Convert":
        return False
    src = node.input_value(0).get_node()
    return src.get_type_name() == "Constant" and src.get_output_element_type(0).is_integral()


def ir_params(path: str | Path) -> tuple[int, int]:
    """``(params, nonzero_params)`` of the IR (or ONNX) model at ``path``, from its constants, counted
    as `modelpress.measure.onnx_size.onnx_params` counts initializers (OpenVINO keeps their names):
    every weight element whatever its type (f32, f16, i8, u8, i32 biases of quantized layers ...);
    left out are i64 / boolean constants (shapes, axes, indices), 0-d scalars, the ranges of
    FakeQuantize and the ``*_scale`` / ``*_zero_point`` constants of quantization. Nonzero: elements
    not equal to 0 (modelpress's integer weights are symmetric, so 0 is their zero point).
    Raises `BadInputError` for a missing file or when OpenVINO is not installed."""
    from modelpress.measure.onnx_size import _QUANT_NAME  # the one naming rule for quantization metadata

    p = _check_model_file(path, "ir_params")
    ops = _core().read_model(str(p)).get_ordered_ops()
    ranges = {v.get_node().get_friendly_name() for op in ops if op.get_type_name() == "FakeQuantize"
              for v in list(op.input_values())[1:]}
    # an IR saved by OpenVINO has folded the scale's name away: Multiply(Convert(int weight), scale)
    ranges |= {v.get_node().get_friendly_name() for op in ops if op.get_type_name() in ("Multiply", "Subtract")
               and any(_dequantized(v.get_node()) for v in op.input_values()) for v in op.input_values()
               if v.get_node().get_type_name() == "Constant"}
    total = nonzero = 0
    for op in ops:
        name = op.get_friendly_name()
        if op.get_type_name() != "Constant" or name in ranges or _QUANT_NAME.search(name):
            continue
        if op.get_output_element_type(0).get_type_name() in ("i64", "boolean") or not list(op.get_output_shape(0)):
            continue
        data = op.get_data()
        total += int(data.size)
        nonzero += int(np.count_nonzero(data))
    return total, nonzero


def compile_openvino(path: str | Path, *, threads: int = 1, precision: str | None = None,
                     perf_count: bool = False) -> Any:
    """An OpenVINO ``CompiledModel`` of the IR (.xml) or ONNX file at ``path`` on the CPU, for latency:
    ``threads`` inference threads, one stream, the LATENCY hint, no core pinning (the machine is
    shared; onnxruntime does not pin either) and ``precision`` as the inference precision hint
    (``f32`` forces f32 execution; ``bf16`` / ``f16`` are hints the plugin may lower to what the CPU
    has — read `executed_format`; None: the precision `to_ir` recorded in the IR, else ``f32``);
    ``perf_count``: OpenVINO's per-layer performance counters on (for `profile_layers`). Raises
    `BadInputError` for bad arguments or when OpenVINO is not installed, `CompressionError` when OpenVINO
    cannot compile the model."""
    p = _check_model_file(path, "compile_openvino")
    check_positive_int(threads, "threads", "compile_openvino")
    if precision is not None:
        _check_precision(precision, "compile_openvino")
    core = _core()
    try:
        model = core.read_model(str(p))
        precision = precision or stored_precision(model) or "f32"
        config = {"INFERENCE_PRECISION_HINT": precision, "INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1,
                  "PERFORMANCE_HINT": "LATENCY", "ENABLE_CPU_PINNING": False, "PERF_COUNT": perf_count}
        return core.compile_model(model, "CPU", config)
    except Exception as exc:  # OpenVINO's own exception types
        raise CompressionError(f"OpenVINO cannot compile `{p}`: {str(exc).strip()[:400]}") from exc


def _input_order(compiled: Any) -> list[Any]:
    """Compiled-model inputs by position: ``input_<i>`` names by ``i`` (modelpress's export), others
    as declared."""
    ins = list(compiled.inputs)
    names = [i.get_any_name() for i in ins]
    if all(re.fullmatch(r"input_\d+", n) for n in names):
        ins = [i for _, i in sorted(zip(names, ins, strict=True), key=lambda t: int(t[0].split("_")[1]))]
    return ins


def _fixed_batch(compiled: Any) -> int | None:
    dims = [i.get_partial_shape()[0] for i in compiled.inputs if i.get_partial_shape().rank.get_length()]
    fixed = {d.get_length() for d in dims if d.is_static}
    return fixed.pop() if len(fixed) == 1 and len(dims) == len(list(compiled.inputs)) else None


def predict_compiled(compiled: Any, owner: str = "ov_predict") -> Predict:
    """A `Predict` over a compiled model: positional torch inputs ``(n, ...)`` → first output ``(n, ...)``
    as a torch tensor, in chunks like `modelpress.measure.runtime.ort_predict`. Raises `BadInputError`
    at call time when the number of inputs differs from the model's."""
    from openvino import PartialShape as ov_shape

    ins = _input_order(compiled)
    types = [i.get_element_type().to_dtype() for i in ins]
    request = compiled.create_infer_request()
    out0 = compiled.output(0)

    def run(part: tuple[Tensor, ...]) -> np.ndarray:
        if len(part) != len(ins):
            raise BadInputError(f"the OpenVINO model takes {len(ins)} inputs "
                                f"({[i.get_any_name() for i in ins]}); got {len(part)}. "
                                "Fix: pass the same inputs as to the torch model.")
        for spec, t in zip(ins, part, strict=True):
            if not spec.get_partial_shape().compatible(ov_shape(list(t.shape))):
                raise BadInputError(f"input `{spec.get_any_name()}` of the OpenVINO model has shape "
                                    f"{spec.get_partial_shape()}; got {list(t.shape)}. Fix: pass inputs of "
                                    "the shape the model was exported with (the task it was compressed for).")
        feed = {i: np.ascontiguousarray(t.detach().cpu().numpy().astype(dt, copy=False))
                for i, (t, dt) in enumerate(zip(part, types, strict=True))}
        feed = {ins[i].get_any_name(): a for i, a in feed.items()}
        return request.infer(feed)[out0]  # share_outputs=False (default): a copy, safe to keep

    return chunked_predict(run, _fixed_batch(compiled), owner)


def ov_predict(path: str | Path, *, threads: int = 1, precision: str | None = None) -> Predict:
    """A `Predict` running the IR (.xml) or ONNX file at ``path`` in OpenVINO's CPU plugin, compiled as
    in `compile_openvino`. Inputs: the model's positional inputs, each ``(n, ...)``, any ``n``; output:
    the first model output, ``(n, ...)`` float tensor. Raises as `compile_openvino` does."""
    return predict_compiled(compile_openvino(path, threads=threads, precision=precision))


@dataclass(frozen=True)
class ExecutedFormat:
    """What a compiled model really computes in, read off OpenVINO's runtime (executed) graph.

    ``precision``: the inference precision the plugin settled on (``f32`` / ``bf16`` / ``f16``, after
    any fallback); ``layers``: number of compute layers (matrix products, convolutions) per executed
    precision, e.g. ``{'int8': 3}`` or ``{'bf16': 36, 'f32': 1}``.
    """

    precision: str
    layers: dict[str, int] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The format name: the compute layers' precisions, most common first (``int8``, ``bf16``,
        ``int8+f32`` for a graph with some layers kept float)."""
        if not self.layers:
            return self.precision
        return "+".join(k for k, _ in sorted(self.layers.items(), key=lambda kv: (-kv[1], kv[0])))


def executed_format(compiled: Any) -> ExecutedFormat:
    """The `ExecutedFormat` of an OpenVINO ``CompiledModel`` (from `compile_openvino`): the runtime
    precision of every executed matrix-product / convolution layer, as modelpress format names."""
    precision = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    precision = {"f32": "f32", "bf16": "bf16", "f16": "f16"}.get(precision, precision)
    counts: Counter[str] = Counter()
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if info["layerType"].astype(str) in _COMPUTE:
            runtime = info["runtimePrecision"].astype(str)
            counts[_NAMES.get(runtime, runtime)] += 1
    return ExecutedFormat(precision=precision, layers=dict(counts))


@dataclass(frozen=True)
class OpenVINOForm:
    """One OpenVINO deployment candidate: the IR converted from an ONNX graph, compiled with one
    precision hint. ``predict`` runs it; ``bytes`` are the IR's on disk; ``executed`` what it computes in."""

    precision: str
    xml: Path
    predict: Predict
    bytes: int
    executed: ExecutedFormat


def openvino_forms(onnx_path: str | Path, workdir: str | Path, *, threads: int = 1,
                   precisions: tuple[str, ...] | None = None) -> tuple[list[OpenVINOForm], list[str]]:
    """The OpenVINO candidates of one ONNX graph: its IR (written under ``workdir``) compiled once per
    precision — by default ``f32`` and each 16-bit precision this CPU executes (`sixteen_bit_precisions`).
    A precision the plugin lowers is left out with a note. Returns ``(forms, notes)``; with OpenVINO not
    installed, no forms and a note saying so. Raises `CompressionError` when OpenVINO cannot convert or
    compile the graph (the caller reports it as a failed candidate)."""
    if not openvino_available():
        return [], [f"OpenVINO candidates skipped: OpenVINO is not installed ({INSTALL_HINT})"]
    src = Path(onnx_path)
    xml = to_ir(src, Path(workdir) / f"{src.stem}.xml")
    forms, notes = [], []
    for precision in precisions if precisions is not None else ("f32", *sixteen_bit_precisions()):
        compiled = compile_openvino(xml, threads=threads, precision=precision)
        executed = executed_format(compiled)
        if executed.precision != precision:
            notes.append(f"OpenVINO {precision} hint not used: this CPU executes it as {executed.label}")
            continue
        if precision in CAPABILITY_16 and precision not in sixteen_bit_precisions():
            notes.append(f"OpenVINO {precision} hint not used: OpenVINO only emulates it on this CPU (no "
                         f"{CAPABILITY_16[precision]} capability; far slower than f32)")
            continue
        forms.append(OpenVINOForm(precision, xml, predict_compiled(compiled), ir_bytes(xml), executed))
    return forms, notes


# OpenVINO's OPTIMIZATION_CAPABILITIES entry that says a 16-bit hint runs on the CPU's own instructions
CAPABILITY_16 = {"bf16": "BF16", "f16": "FP16"}


@lru_cache(maxsize=1)
def sixteen_bit_precisions() -> tuple[str, ...]:
    """The 16-bit hints (``bf16``, ``f16``) that OpenVINO's CPU plugin executes natively on this CPU: a
    one-layer model is compiled with each hint and kept where the executed precision equals it (a f16
    hint on a CPU without AVX512-FP16 runs in bf16) and OpenVINO lists the capability (`CAPABILITY_16`).
    Executing is not enough: an AVX-512 Xeon without AVX512-BF16 or AMX (no ``BF16`` capability) still
    runs the bf16 hint, emulated, and MiniLM at batch 1 × 128 took 1332 ms there against 31.9 ms in f32
    (docs/bench-runtimes.md), so an emulated hint is never offered. Empty when OpenVINO is not installed."""
    if not openvino_available():
        return ()
    import openvino as ov
    import openvino.opset13 as ops

    x = ops.parameter([1, 16], np.float32, name="x")
    model = ov.Model([ops.matmul(x, ops.constant(np.ones((16, 16), np.float32)), False, False)], [x], "probe")
    caps = set(openvino_capabilities())
    out = []
    for hint in ("bf16", "f16"):
        compiled = _core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": hint})
        if executed_format(compiled).precision == hint and CAPABILITY_16[hint] in caps:
            out.append(hint)
    return tuple(out)


def profile_layers(path: str | Path, inputs: tuple[Tensor, ...], *, threads: int = 1, precision: str | None = None,
                   runs: int = 20) -> dict[str, float]:
    """Where a compiled model's time goes: OpenVINO's per-layer performance counters (``PERF_COUNT``),
    summed per executed layer type and kernel (``"FullyConnected jit_avx512_amx_I8"`` ...), in ms per
    call, median over ``runs`` calls of ``inputs`` (one batch, positional, as for `ov_predict`), largest
    first. Compiled as `compile_openvino` compiles, with the counters on (they add a little overhead to
    every layer, so compare profiles with each other, not with `time_interleaved`'s latencies). Raises as
    `compile_openvino` does."""
    check_positive_int(runs, "runs", "profile_layers")
    compiled = compile_openvino(path, threads=threads, precision=precision, perf_count=True)
    ins = _input_order(compiled)
    feed = {i.get_any_name(): np.ascontiguousarray(t.numpy().astype(i.get_element_type().to_dtype(), copy=False))
            for i, t in zip(ins, inputs, strict=True)}
    request = compiled.create_infer_request()
    calls: list[Counter[str]] = []
    for _ in range(runs + 2):  # two warm-up calls
        request.infer(feed)
        call: Counter[str] = Counter()
        for info in request.get_profiling_info():
            key = f"{info.node_type} {info.exec_type}"
            call[key] += info.real_time.total_seconds() * 1e3 if info.status == info.Status.EXECUTED else 0.0
        calls.append(call)
    kept = calls[2:]
    out = {k: float(np.median([c[k] for c in kept])) for k in kept[0]}
    return dict(sorted(((k, v) for k, v in out.items() if v > 0), key=lambda kv: -kv[1]))
