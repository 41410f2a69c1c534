"""Activation range observers for static quantization: min-max, percentile, MSE.

An observer sees every calibration batch of one tensor (``update``) and then gives one real range
(``range``). Min-max tracks exact extremes; percentile and MSE work on a bounded random sample of the
values (a reservoir), which estimates quantiles and errors well at a fixed memory cost.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from modelpress.errors import bad_value
from modelpress.quantization.affine import dequantize, qparams_from_range, qrange, quantize
from modelpress.tasks.task import Split

__all__ = ["ACT_BITS", "RangeObserver", "observe_inputs"]

# Activations are uint8, asymmetric: onnxruntime's fast int8 CPU kernels take u8 activations × s8 weights.
ACT_BITS = 8
_SAMPLE = 200_000  # values kept for percentile / MSE, per observed tensor


class RangeObserver:
    """Collects one tensor's values over calibration batches and picks its quantization range.

    ``method``: ``minmax`` | ``percentile`` (clip at ``percentile`` and ``100 - percentile``) | ``mse``
    (the clipping of the min-max range that minimizes the uint8 quantization error of the sample).
    """

    def __init__(self, method: str = "minmax", percentile: float = 99.99, seed: int = 0) -> None:
        if method not in ("minmax", "percentile", "mse"):
            raise bad_value("observer", "Quantize", "one of ['minmax', 'percentile', 'mse']", method)
        self.method = method
        self.percentile = float(percentile)
        self.lo = float("inf")
        self.hi = float("-inf")
        self._sample: list[Tensor] = []
        self._kept = 0
        self._gen = torch.Generator().manual_seed(seed)

    @property
    def seen(self) -> bool:
        return self.lo <= self.hi

    def update(self, x: Tensor) -> None:
        """Observe one batch (any shape, float)."""
        x = x.detach().float().reshape(-1)
        if x.numel() == 0:
            return
        self.lo = min(self.lo, float(x.min()))
        self.hi = max(self.hi, float(x.max()))
        if self.method != "minmax" and self._kept < 4 * _SAMPLE:
            take = min(x.numel(), _SAMPLE // 4)
            idx = torch.randint(0, x.numel(), (take,), generator=self._gen)
            self._sample.append(x[idx])
            self._kept += take

    def range(self) -> tuple[float, float]:
        """The chosen ``(lo, hi)``; raises BadInputError when nothing was observed."""
        if not self.seen:
            raise bad_value("calibration", "Quantize", "a non-empty calibration split", "no batches",
                            "give the task a calibration split with at least one example.")
        if self.method == "minmax" or not self._sample:
            return self.lo, self.hi
        sample = torch.cat(self._sample)
        if self.method == "percentile":
            q = torch.tensor([(100.0 - self.percentile) / 100.0, self.percentile / 100.0])
            lo, hi = torch.quantile(sample, q).tolist()
            return min(lo, 0.0), max(hi, 0.0)
        return self._mse(sample)

    def _mse(self, sample: Tensor) -> tuple[float, float]:
        qmin, qmax = qrange(ACT_BITS, False)
        best = (float("inf"), self.lo, self.hi)
        lo0, hi0 = torch.tensor(self.lo), torch.tensor(self.hi)
        for k in range(40):
            f = 1.0 - 0.02 * k
            s, z = qparams_from_range(lo0 * f, hi0 * f, ACT_BITS, symmetric=False, signed=False)
            err = float((dequantize(quantize(sample, s, z, qmin, qmax), s, z) - sample).pow(2).mean())
            if err < best[0]:
                best = (err, self.lo * f, self.hi * f)
        return best[1], best[2]

    def qparams(self) -> tuple[float, int]:
        """``(scale, zero_point)`` of the chosen range, uint8 asymmetric."""
        lo, hi = self.range()
        s, z = qparams_from_range(torch.tensor(lo), torch.tensor(hi), ACT_BITS, symmetric=False, signed=False)
        return float(s), int(z)


def observe_inputs(model: nn.Module, names: list[str], on_input: Callable[[str, Tensor], None], split: Split,
                   *, batch_size: int = 32) -> None:
    """Run ``model`` (in eval mode, no grad) once over ``split`` in batches of ``batch_size``, calling
    ``on_input(name, x)`` with the first positional input ``x`` of each named submodule on every call.
    The hooks are removed and the model's training flag restored afterwards, also on error."""
    handles = [model.get_submodule(n).register_forward_pre_hook(
        lambda _m, args, n=n: on_input(n, args[0])) for n in names]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for inputs, _ in split.batches(batch_size):
                model(*inputs)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
