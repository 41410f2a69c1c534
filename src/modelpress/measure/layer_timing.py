"""One layer against its replacement, timed in the deployment runtime (onnxruntime).

A factored layer has fewer MACs but runs as two to four smaller kernels, each at a lower fraction of the
CPU's peak; whether it is faster depends on the shapes, the batch and the threads (architecture §8: Tucker /
CP of small convs are often slower at 2 threads). So each candidate is exported alone to ONNX, with the
input it sees inside the model, and timed interleaved against the dense layer.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from modelpress.errors import bad_value

__all__ = ["LayerTiming", "layer_inputs", "time_layer", "to_batch"]


@dataclass(frozen=True)
class LayerTiming:
    """Milliseconds per call of the dense layer and of its replacement — the lower quartile of each
    round's calls (see `Latency.p25_ms`: on a shared machine pre-emption inflates the median of the longer
    call more) — in the round with the median ratio, and ``rounds`` timed."""

    dense_ms: float
    new_ms: float
    rounds: int

    @property
    def ratio(self) -> float:
        """new / dense latency (below 1: the replacement is faster)."""
        return self.new_ms / self.dense_ms


@torch.no_grad()
def layer_inputs(model: nn.Module, names: list[str], inputs: tuple[Tensor, ...]) -> dict[str, Tensor]:
    """The first positional input each module ``names[i]`` of ``model`` receives when ``model(*inputs)``
    runs (eval mode; the model's mode is restored). Modules never called are missing from the result."""
    seen: dict[str, Tensor] = {}
    hooks = []
    for name in names:
        def hook(_m: nn.Module, args: tuple, _name: str = name) -> None:
            if _name not in seen and args and isinstance(args[0], Tensor):
                seen[_name] = args[0].detach().clone()
        hooks.append(model.get_submodule(name).register_forward_pre_hook(hook))
    was_training = model.training
    model.eval()
    try:
        model(*inputs)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return seen


def to_batch(x: Tensor, batch_size: int) -> Tensor:
    """``x`` ``(n, ...)`` as ``batch_size`` rows (its rows repeated or cut)."""
    reps = -(-batch_size // x.shape[0])
    return x.repeat(reps, *([1] * (x.dim() - 1)))[:batch_size].contiguous()


def _once(predicts: list, x: Tensor, threads: int, runs: int) -> tuple[float, float]:
    from modelpress.measure.latency import time_interleaved

    a, b = time_interleaved(predicts, (x,), threads=threads, warmup=10, runs=runs)
    return a.p25_ms, b.p25_ms


def time_layer(dense: nn.Module, new: nn.Module, x: Tensor, *, threads: int = 1, runs: int = 40,
               decide_at: float | None = None, band: float = 0.1, rounds: int = 1) -> LayerTiming:  # fmt: skip
    """Export ``dense`` and ``new`` (standard modules; pass a swapped module's ``export_module()``) to ONNX
    with input ``x`` (the batch to time at) and time them in onnxruntime, interleaved, ``runs`` calls each.

    ``rounds`` rounds are timed (each ``runs`` calls per module); when ``decide_at`` is given and the
    first ratio new / dense falls within ``band`` of it, at least three (a close call on a shared machine
    needs more than one look). The round with the median ratio is returned (lower-quartile times, see
    `LayerTiming`). Raises BadInputError for bad counts, CompressionError when a module cannot
    be exported or run.
    """
    from modelpress.artifact.onnx import export_onnx
    from modelpress.measure.runtime import ort_predict

    if not isinstance(runs, int) or runs < 1:
        raise bad_value("runs", "time_layer", "an int >= 1", runs)
    with tempfile.TemporaryDirectory(prefix="modelpress-layer-") as tmp:
        # export_onnx exports an eval-mode copy: the caller's modules keep their mode
        paths = [export_onnx(m, (x,), Path(tmp) / f"{i}.onnx", dynamic_batch=False)
                 for i, m in enumerate((dense, new))]  # fmt: skip
        predicts = [ort_predict(p, threads=threads) for p in paths]
        timed = [_once(predicts, x, threads, runs)]
        close = decide_at is not None and abs(timed[0][1] / timed[0][0] - decide_at) < band
        timed += [_once(predicts, x, threads, runs) for _ in range(max(rounds, 3 if close else 1) - 1)]
    timed.sort(key=lambda r: r[1] / r[0])
    d, n = timed[len(timed) // 2]
    return LayerTiming(d, n, len(timed))
