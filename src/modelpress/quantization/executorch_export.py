"""Export a model to an ExecuTorch program (``.pte``) lowered to XNNPACK, in fp32, int8 or with 4-bit weights.

Why these choices (each measured or found on this machine, docs/bench-runtimes.md):

- **int8 through XNNPACK's pt2e quantizer, fed modelpress's decisions.** XNNPACK runs int8 only as the
  quantize / dequantize patterns its own quantizer writes (``prepare_pt2e`` / ``convert_pt2e``), so the
  program is built with it, but nothing is re-decided where modelpress already decided: a layer
  modelpress kept float (``max_drop``, a selection) is filtered out of the quantizer; a quantized
  layer's weight observer is set to modelpress's per-channel scales (QAT's learned ones included), so
  the int8 codes are modelpress's bit for bit; a static layer's input observer is set to modelpress's
  calibrated range. What is re-done is listed in `PteExport.notes` (e.g. per-tensor or 4-bit weights,
  which XNNPACK's int8 kernels do not take, re-quantized per channel; the activations of ops between
  quantized layers, calibrated by XNNPACK's observers on the task's calibration split).
- **Word embeddings as int8 rows.** XNNPACK's quantizer leaves ``nn.Embedding`` tables in fp32 (the MiniLM
  int8 program stayed at 51 MB); they become ``quantized_decomposed::embedding_byte`` with
  modelpress's own row codes (or symmetric per-row codes for a float table), a portable kernel.
- **4-bit weights** (``int4-dynamic``) as XNNPACK's int4 group-wise Linear kernels and ``embedding_4bit``
  tables, built from modelpress's codes without a second quantizer (`modelpress.quantization.executorch_int4`).
- **Eager attention** for Hugging Face models: with ``sdpa`` the softmax's masking ops are not delegated
  and the fp32 program ran 1.4× slower than eager.
- **No-op integer adds dropped before quantizing**: ``transform_for_annotation`` turns the int64
  ``add(arange, 0)`` of the attention-mask code into a float add, and calibration then fails with
  "tensors used as indices must be long".

>>> out = export_pte(model, task.example_inputs, "out/model.pte", mode="int8-static",
...                  calibration=task.calibration)                     # doctest: +SKIP
>>> out.ops.describe()                                                  # doctest: +SKIP
'9 ops delegated to XNNPACK, 0 portable'
"""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from modelpress.errors import CompressionError, bad_value
from modelpress.measure.executorch_runtime import OpCounts, require_executorch, set_threads
from modelpress.quantization.modules import _Half, _Quantized
from modelpress.tasks.task import Split

__all__ = ["MODES", "ByteEmbedding", "PteExport", "export_pte"]

MODES = ("fp32", "int8-static", "int8-dynamic", "int4-dynamic")
_WEIGHTED = ("aten.linear.default", "aten.conv2d.default", "aten.conv1d.default")
_ACT_QMAX = 255  # modelpress's activations are uint8
# Ops whose output shares its input's quantization parameters in XNNPACK (a pooled or reshaped int8
# tensor keeps its grid): the observer after one is not set to modelpress's range, or XNNPACK refuses
# the program at load ("Failed to create maxpool2d node", found with LeNet-5).
_SHARED = ("max_pool", "avg_pool", "view", "reshape", "flatten", "permute", "squeeze", "transpose", "cat",
           "mean", "hardtanh", "clamp")


class ByteEmbedding(nn.Module):
    """An embedding table stored as int8 rows (``qweight`` ``(num, dim)``, ``scale`` ``(num,)``, zero point
    0), run by ExecuTorch's ``quantized_decomposed::embedding_byte`` kernel: indices ``(...)`` int64 →
    ``(..., dim)`` float32."""

    def __init__(self, qweight: Tensor, scale: Tensor, padding_idx: int | None = None) -> None:
        super().__init__()
        self.register_buffer("qweight", qweight.to(torch.int8).contiguous())
        self.register_buffer("scale", scale.float().reshape(-1).contiguous())
        self.padding_idx = padding_idx

    @classmethod
    def from_float(cls, weight: Tensor, padding_idx: int | None = None) -> ByteEmbedding:
        """Symmetric per-row int8 codes of a float table ``(num, dim)`` (scale = row max |w| / 127)."""
        w = weight.detach().float()
        scale = w.abs().amax(1).clamp_min(1e-12) / 127
        return cls(torch.round(w / scale[:, None]).clamp(-127, 127), scale, padding_idx)

    def forward(self, indices: Tensor) -> Tensor:
        return torch.ops.quantized_decomposed.embedding_byte.default(
            self.qweight, self.scale, None, -127, 127, indices)


@dataclass(frozen=True)
class _Layer:
    """modelpress's decisions for one quantized Linear / Conv: per-channel weight scale (None when the
    weight is not 8-bit symmetric per channel), activation mode and, when static, its real range."""

    scale: Tensor | None
    act: str
    act_range: tuple[float, float] | None


@dataclass(frozen=True)
class PteExport:
    """A written ``.pte``: its path, bytes, what XNNPACK took (`OpCounts`), what of modelpress's
    decisions was carried over (``carried``) and what was re-done or left float (``notes``)."""

    path: Path
    mode: str
    bytes: int
    ops: OpCounts
    carried: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """ExecuTorch / torchao log and warn per node while lowering; none of it is actionable here."""
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(logging.NOTSET)


def _eager_attention(model: nn.Module) -> None:
    """Switch Hugging Face models to eager attention (see the module docstring)."""
    for m in model.modules():
        config = getattr(m, "config", None)
        if config is not None and hasattr(config, "_attn_implementation"):
            with contextlib.suppress(Exception):
                config._attn_implementation = "eager"


def _plan(model: nn.Module, mode: str, notes: list[str]) -> tuple[nn.Module, dict[str, _Layer], dict[str, str]]:
    """The export form of ``model`` (a baked copy, every other swap in its deploy form); when quantizing,
    modelpress's decisions per layer left to XNNPACK's int8 quantizer, and (``int4-dynamic``) the layers
    already in their 4-bit export form (name → ``carried`` / ``requantized`` / ``embedding``); embedding
    tables become `ByteEmbedding` (or `NibbleEmbedding` for 4-bit codes)."""
    from modelpress.artifact import bake
    from modelpress.artifact.packed import export_view

    quantize = mode != "fp32"
    work = bake(model).eval()
    layers: dict[str, _Layer] = {}
    four: dict[str, str] = {}
    for name, m in list(work.named_modules()):
        if isinstance(m, _Half) or (isinstance(m, _Quantized) and not quantize):
            _replace(work, name, m.to_dense())
        elif isinstance(m, _Quantized) and mode == "int4-dynamic" and m.spec.bits == 4:
            new = _int4_form(name, m, notes)
            if new is None:
                layers[name] = _Layer(None, "dynamic", None)
            else:
                four[name] = "embedding" if m.meta["kind"] == "embedding" else \
                    "carried" if m.spec.symmetric else "requantized"
                _replace(work, name, new)
        elif isinstance(m, _Quantized) and m.meta["kind"] == "embedding":
            _replace(work, name, _embedding(m))
        elif isinstance(m, _Quantized):
            layers[name] = _int8_layer(name, m, notes)
        elif quantize and type(m) is nn.Embedding:
            _replace(work, name, ByteEmbedding.from_float(m.weight, m.padding_idx))
    work = export_view(work)
    _eager_attention(work)
    return work, layers, four


def _int4_form(name: str, m: _Quantized, notes: list[str]) -> nn.Module | None:
    """A 4-bit layer's XNNPACK / portable form (`modelpress.quantization.executorch_int4`), None when it
    has none (a Linear whose group does not divide its rows: left to the 8-bit path)."""
    from modelpress.quantization.executorch_int4 import int4_embedding, int4_linear

    if m.meta["kind"] == "linear":
        return int4_linear(name, m, notes)
    if m.meta["kind"] == "embedding":
        emb = int4_embedding(m)
        if emb is None:
            notes.append(f"{name}: 4-bit table stored as int8 rows (its row length does not split into its groups)")
        return emb if emb is not None else _embedding(m)
    notes.append(f"{name}: 4-bit {m.meta['kind']} left to XNNPACK's 8-bit quantizer (its 4-bit kernels are "
                 "for Linear layers)")
    return None


def _int8_layer(name: str, m: _Quantized, notes: list[str]) -> _Layer:
    """modelpress's decisions for a layer XNNPACK's int8 quantizer takes: its per-channel scale when it is
    8-bit symmetric per channel (else re-quantized, noted), its activation mode and static range."""
    spec = m.spec
    exact = spec.bits == 8 and spec.granularity == "channel" and spec.symmetric
    if not exact:
        notes.append(f"{name}: {spec.bits}-bit {spec.granularity} weights re-quantized per channel "
                     "by XNNPACK's quantizer (its int8 kernels take 8-bit per-channel weights)")
    lo, hi = (0 - m.act_zp) * m.act_scale, (_ACT_QMAX - m.act_zp) * m.act_scale
    return _Layer(m.scale.reshape(-1).clone() if exact else None, m.act, (lo, hi) if m.act == "static" else None)


def _embedding(m: _Quantized) -> nn.Module:
    """modelpress's own int8 row codes when they are symmetric per row, else fresh per-row codes."""
    if m.spec.bits == 8 and m.spec.granularity == "channel" and m.spec.symmetric:
        return ByteEmbedding(m.qweight, m.scale.reshape(-1), m.meta.get("padding_idx"))
    return ByteEmbedding.from_float(m.to_dense().weight, m.meta.get("padding_idx"))


def _replace(root: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, new)


def _module_of(node: Any) -> str | None:
    """The qualified name of the innermost module a graph node came from."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return None
    path = list(stack.values())[-1][0]
    return path.replace("L['self'].", "").replace("L__self__.", "") or None


def _drop_noop_adds(gm: torch.fx.GraphModule) -> int:
    """Remove ``add(x, 0)`` on integer tensors (see the module docstring); returns how many."""
    dropped = 0
    for node in list(gm.graph.nodes):
        if node.op == "call_function" and str(node.target) == "aten.add.Tensor" and len(node.args) == 2:
            x, y = node.args
            val = x.meta.get("val") if isinstance(x, torch.fx.Node) else None
            if isinstance(y, int) and y == 0 and val is not None and not val.dtype.is_floating_point:
                node.replace_all_uses_with(x)
                gm.graph.erase_node(node)
                dropped += 1
    if dropped:
        gm.graph.lint()
        gm.recompile()
    return dropped


def _quantizer(mode: str, layers: dict[str, _Layer], weighted_float: set[str], own: set[str]) -> Any:
    """XNNPACK's quantizer, per channel, static or dynamic, skipping the layers in ``weighted_float``
    (kept float) and ``own`` (already in their 4-bit form)."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )

    config = get_symmetric_quantization_config(is_per_channel=True, is_dynamic=mode != "int8-static")

    def keep(node: Any) -> bool:  # layers modelpress kept float stay float
        return not (str(node.target) in _WEIGHTED and _module_of(node) in weighted_float | own)

    quantizer = XNNPACKQuantizer().set_global(config)
    return quantizer.set_filter_function(keep) if layers or weighted_float or own else quantizer


def _carry_over(prepared: torch.fx.GraphModule, layers: dict[str, _Layer]) -> dict[str, int]:
    """Set the observers of modelpress's quantized layers to its scales and ranges (see the module
    docstring). Returns how many weight scales and activation ranges were carried."""
    from torchao.quantization.pt2e import MinMaxObserver

    carried = Counter()
    for node in prepared.graph.nodes:
        if node.op != "call_function" or str(node.target) not in _WEIGHTED:
            continue
        layer = layers.get(_module_of(node) or "")
        if layer is None:
            continue
        x, w = node.args[0], node.args[1]
        obs_w = getattr(prepared, w.target, None) if w.op == "call_module" else None
        if layer.scale is not None and obs_w is not None and hasattr(obs_w, "min_val"):
            s = layer.scale.float()
            seen = torch.maximum(-obs_w.min_val, obs_w.max_val).float()  # the weight as the graph holds it
            if seen.shape != s.shape or bool((seen > 127 * s * (1 + 1e-4) + 1e-12).any()):
                carried["weight_scales_not_carried"] += 1  # the graph's weight is not modelpress's (folded?)
            else:
                obs_w.min_val, obs_w.max_val = -127 * s, 127 * s
                carried["weight_scales"] += 1
        shared = x.op == "call_module" and x.args and any(k in str(getattr(x.args[0], "target", "")) for k in _SHARED)
        if layer.act_range is not None and shared:
            carried["activation_ranges_not_carried"] += 1  # XNNPACK keeps the producer's grid
        elif layer.act_range is not None and x.op == "call_module" and hasattr(getattr(prepared, x.target), "min_val"):
            obs = MinMaxObserver(dtype=torch.int8, quant_min=-128, quant_max=127, qscheme=torch.per_tensor_affine,
                                 eps=2**-12)
            obs.min_val, obs.max_val = torch.tensor(layer.act_range[0]), torch.tensor(layer.act_range[1])
            setattr(prepared, x.target, obs)
            carried["activation_ranges"] += 1
    return dict(carried)


def _calibrate(prepared: torch.fx.GraphModule, calibration: Split, batch_size: int) -> int:
    """Run full batches of ``batch_size`` calibration examples (the program's fixed shape)."""
    n = (len(calibration) // batch_size) * batch_size
    if n == 0:
        raise bad_value("calibration", "export_pte", f"at least {batch_size} examples", len(calibration))
    with torch.no_grad():
        for start in range(0, n, batch_size):
            prepared(*(t[start : start + batch_size] for t in calibration.inputs))
    return n


def _lower(ep: Any) -> tuple[Any, OpCounts]:
    """``to_edge_transform_and_lower`` with the XNNPACK partitioner; the ops inside the delegate and the
    ops left to portable kernels, counted on the lowered graph."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    edge = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()])
    gm = edge.exported_program().graph_module
    delegated: Counter[str] = Counter()
    portable: Counter[str] = Counter()
    calls = 0
    for node in gm.graph.nodes:
        name = _op_name(node.target) if node.op == "call_function" else "getitem"
        if name == "getitem":
            continue
        if name == "executorch_call_delegate":
            calls += 1
            lowered = getattr(gm, node.args[0].target)
            for inner in lowered.original_module.graph.nodes:
                inner_name = _op_name(inner.target) if inner.op == "call_function" else "getitem"
                if inner_name != "getitem":
                    delegated[inner_name] += 1
        else:
            portable[name] += 1
    return edge, OpCounts(dict(delegated), dict(portable), calls)


def _op_name(target: Any) -> str:
    """``aten::linear`` for an (edge) op overload ``aten.linear.default``; a function's name otherwise."""
    text = str(target)
    m = re.match(r"^(?:<EdgeOpOverload: )?([a-z_0-9]+)\.([A-Za-z_0-9]+)\.[A-Za-z_0-9]+", text)
    if m:
        return f"{m.group(1)}::{m.group(2)}"
    return getattr(target, "__name__", text)


def export_pte(model: nn.Module, example_inputs: tuple[Tensor, ...], path: str | Path, *, mode: str = "fp32",
               calibration: Split | None = None, batch_size: int = 1, threads: int = 1) -> PteExport:
    """Write ``path`` (.pte): ``model`` exported with ``batch_size`` rows of ``example_inputs`` (the
    program's fixed input shape), lowered to XNNPACK, in ``mode`` ``fp32``, ``int8-static`` (int8
    weights per channel and activations, ranges from modelpress or, for ops modelpress did not
    quantize, calibrated on ``calibration``), ``int8-dynamic`` (activations quantized per call) or
    ``int4-dynamic`` (modelpress's 4-bit Linear layers as XNNPACK's int4 group-wise kernels with int8
    per-token inputs, its 4-bit tables as ``embedding_4bit``, its other quantized layers as in
    ``int8-dynamic``: see `modelpress.quantization.executorch_int4`; needs a model with 4-bit layers).
    ``threads``: the size the process's ExecuTorch thread pool is set to first (see
    `modelpress.measure.executorch_runtime.set_threads`: resizing it after lowering crashed here).
    ``model`` is not modified. Raises `BadInputError` for a bad mode, without ExecuTorch, or for a
    static mode without calibration data, or ``int4-dynamic`` for a model without 4-bit layers;
    `CompressionError` when export or lowering fails."""
    require_executorch("export_pte")
    if mode not in MODES:
        raise bad_value("mode", "export_pte", f"one of {list(MODES)}", mode)
    if mode == "int8-static" and calibration is None:
        raise bad_value("calibration", "export_pte", "a calibration Split for int8-static", None)
    import executorch.exir.passes._quant_patterns_and_replacements  # defines embedding_byte
    import executorch.kernels.quantized  # noqa: F401 - its AOT kernels

    set_threads(threads)
    notes: list[str] = []
    inputs = tuple(t[:1].expand(batch_size, *t.shape[1:]).contiguous() for t in example_inputs)
    with _quiet(), torch.no_grad():
        work, layers, four = _plan(model, mode, notes)
        if mode == "int4-dynamic" and not four:
            raise bad_value("mode", "export_pte", "int4-dynamic only for a model with modelpress 4-bit layers",
                            mode, "quantize it with bits 4 first (e.g. mode int4-weight), or export int8-dynamic.")
        try:
            ep = torch.export.export(work, inputs)
            carried: dict[str, Any] = {}
            if mode != "fp32":
                ep, carried = _quantize(ep, inputs, mode, layers, set(four), work, calibration, batch_size,
                                        notes)
                if four:
                    carried["int4"] = dict(Counter(four.values()))
            edge, ops = _lower(ep)
            program = edge.to_executorch()
        except (RuntimeError, ValueError, TypeError, AssertionError, NotImplementedError) as exc:
            text = str(exc).strip().splitlines()
            raise CompressionError(f"ExecuTorch export ({mode}) failed: {type(exc).__name__}: "
                                   f"{text[0][:300] if text else ''}") from exc
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(program.buffer)
    from modelpress.measure.executorch_runtime import load_method

    load_method(out, "export_pte")  # XNNPACK compiles at load: a program it refuses is a failed export
    if ops.portable:
        notes.append(f"some ops fall back to portable kernels: {ops.describe()}")
    return PteExport(out, mode, out.stat().st_size, ops, carried, tuple(notes))


def _quantize(ep: Any, inputs: tuple[Tensor, ...], mode: str, layers: dict[str, _Layer], own: set[str],
              work: nn.Module, calibration: Split | None, batch_size: int, notes: list[str]
              ) -> tuple[Any, dict[str, Any]]:
    """pt2e: prepare with XNNPACK's quantizer (modelpress's float layers and the 4-bit layers ``own``
    filtered out), calibrate, carry modelpress's scales and ranges into the observers, convert, re-export.
    Nothing to do (``ep`` back) when every quantized layer is already in its 4-bit form."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    weighted = {n for n, m in work.named_modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))}
    weighted_float = weighted - set(layers) if layers or own else set()
    if own and not layers:
        return ep, {"layers_kept_float": sorted(weighted_float)}
    gm = ep.module()
    dropped = _drop_noop_adds(gm)
    prepared = prepare_pt2e(gm, _quantizer(mode, layers, weighted_float, own))
    calibrated = 0
    if mode == "int8-static" and calibration is not None:
        calibrated = _calibrate(prepared, calibration, batch_size)
    else:
        prepared(*inputs)
    carried: dict[str, Any] = _carry_over(prepared, layers) if layers else {}
    converted = convert_pt2e(prepared)
    carried |= {"layers_kept_float": sorted(weighted_float), "noop_int_adds_dropped": dropped,
                "calibration_examples": calibrated}
    if not layers:
        notes.append("no modelpress-quantized layer: XNNPACK's quantizer chose every weight scale"
                     + (" and activation range (calibrated on the task's calibration split)"
                        if mode == "int8-static" else ""))
    elif mode == "int8-static":
        notes.append("activation ranges of ops between modelpress's layers (pooling, adds, outputs) "
                     f"calibrated by XNNPACK's observers on {calibrated} calibration examples")
    return torch.export.export(converted, inputs), carried
