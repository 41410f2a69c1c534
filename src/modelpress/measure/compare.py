"""Comparing two measured models: ratios b / a, the metric's change, and tables for people.

A ratio below 1 means model ``b`` is smaller / faster / lighter than ``a``. Latencies of two models
measured in separate calls drift apart with the machine; `compare_models` re-times both interleaved so
the latency ratio is fair (DESIGN §5).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from torch import nn

from modelpress.errors import bad_value
from modelpress.measure._model import baked_eval_copy, batch_of
from modelpress.measure.latency import time_interleaved
from modelpress.measure.stats import Stats
from modelpress.tasks.task import Task

__all__ = ["Comparison", "compare", "compare_models", "format_stats", "human_bytes", "human_count"]

# (field, label, kind) of each figure compared; kind picks the human unit.
_ROWS: tuple[tuple[str, str, str], ...] = (
    ("size_bytes", "size", "bytes"),
    ("params", "params", "count"),
    ("nonzero_params", "nonzero params", "count"),
    ("macs", "MACs / example", "count"),
    ("latency_ms", "latency median", "ms"),
    ("latency_p90_ms", "latency p90", "ms"),
    ("peak_mem_bytes", "peak memory", "bytes"),
)
RATIO_FIELDS: tuple[str, ...] = tuple(f for f, _, _ in _ROWS)


def human_bytes(n: float) -> str:
    """``1536 -> '1.50 KB'`` (1 KB = 1024 bytes)."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def human_count(n: float) -> str:
    """``266200 -> '266.2K'``; below 1000 the plain number."""
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= div:
            return f"{n / div:.1f}{unit}"
    return f"{n:.0f}"


def _human(value: float, kind: str) -> str:
    if kind == "bytes":
        return human_bytes(value)
    if kind == "ms":
        return f"{value:.3f} ms"
    return human_count(value)


def _ratio(a: float, b: float) -> float:
    """b / a; 1.0 when both are 0, inf when only a is 0 (JSON gets None for it)."""
    if a == 0:
        return 1.0 if b == 0 else math.inf
    return b / a


def _fmt_ratio(r: float) -> str:
    return "n/a" if not math.isfinite(r) else f"{r:.3f}×"


@dataclass(frozen=True)
class Comparison:
    """Two `Stats` (``a`` the reference, ``b`` the candidate) with ``ratios[field] = b / a`` for every
    field in `RATIO_FIELDS` and ``metric_delta = b.metric - a.metric``."""

    a: Stats
    b: Stats
    ratios: dict[str, float]
    metric_delta: float
    metric_name: str = "metric"

    def _rows(self) -> list[tuple[str, str, str, str]]:
        rows = []
        for f, label, kind in _ROWS:
            rows.append(
                (
                    label,
                    _human(getattr(self.a, f), kind),
                    _human(getattr(self.b, f), kind),
                    _fmt_ratio(self.ratios[f]),
                )
            )
        rows.append(
            (self.metric_name, f"{self.a.metric:.4f}", f"{self.b.metric:.4f}", f"{self.metric_delta:+.4f}")
        )
        return rows

    def table(self) -> str:
        """Aligned plain text: one row per figure, columns a, b and b / a (the metric's row: b - a)."""
        header = ("", "a", "b", "b / a")
        rows = [header, *self._rows()]
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = []
        for r in rows:
            cells = [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)]
            lines.append("  ".join(cells).rstrip())
        lines.append(_setting(self.a, self.b))
        return "\n".join(lines)

    def markdown(self) -> str:
        """The same table in GitHub markdown."""
        lines = ["| | a | b | b / a |", "|---|---:|---:|---:|"]
        lines += [f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} |" for r in self._rows()]
        lines.append("")
        lines.append(_setting(self.a, self.b))
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: both stats, the ratios (None where not finite) and the metric delta."""
        return {
            "a": self.a.to_dict(),
            "b": self.b.to_dict(),
            "ratios": {k: (v if math.isfinite(v) else None) for k, v in self.ratios.items()},
            "metric_delta": self.metric_delta,
            "metric_name": self.metric_name,
        }


def _setting(a: Stats, b: Stats) -> str:
    def one(s: Stats) -> str:
        return f"{s.runtime}, {s.threads} thread{'s' if s.threads != 1 else ''}, batch {s.batch_size}"

    sa, sb = one(a), one(b)
    return f"latency: {sa}" if sa == sb else f"latency: a {sa}; b {sb}"


def compare(a: Stats, b: Stats, *, metric_name: str = "metric") -> Comparison:
    """Ratios ``b / a`` of every figure and the metric's change ``b - a``. Raises `BadInputError`
    unless both are `Stats`."""
    for name, s in (("a", a), ("b", b)):
        if not isinstance(s, Stats):
            raise bad_value(name, "compare", "a Stats", type(s).__name__, "use modelpress.measure.measure().")
    ratios = {f: _ratio(float(getattr(a, f)), float(getattr(b, f))) for f in RATIO_FIELDS}
    return Comparison(a=a, b=b, ratios=ratios, metric_delta=b.metric - a.metric, metric_name=metric_name)


def compare_models(
    model_a: nn.Module,
    model_b: nn.Module,
    task: Task,
    *,
    threads: int = 1,
    batch_size: int = 1,
    runs: int = 30,
) -> Comparison:
    """Measure both models on ``task`` (`measure`), then time them again interleaved in this process
    (`time_interleaved`) and use those latencies, so the latency ratio is fair. Neither model is
    changed. Raises `BadInputError` for bad arguments."""
    from modelpress.measure.measuring import measure

    sa = measure(model_a, task, threads=threads, batch_size=batch_size, runs=runs)
    sb = measure(model_b, task, threads=threads, batch_size=batch_size, runs=runs)
    inputs = batch_of(task.test, batch_size)
    ba, bb = baked_eval_copy(model_a), baked_eval_copy(model_b)
    la, lb = time_interleaved([lambda x: ba(*x), lambda x: bb(*x)], inputs, threads=threads, runs=runs)
    sa = dataclasses.replace(sa, latency_ms=la.median_ms, latency_p90_ms=la.p90_ms)
    sb = dataclasses.replace(sb, latency_ms=lb.median_ms, latency_p90_ms=lb.p90_ms)
    return compare(sa, sb, metric_name=task.metric.name)


def format_stats(stats: Stats, *, metric_name: str = "metric") -> str:
    """One model's figures as an aligned two-column table for the command line."""
    if not isinstance(stats, Stats):
        raise bad_value("stats", "format_stats", "a Stats", type(stats).__name__)
    rows = [(label, _human(getattr(stats, f), kind)) for f, label, kind in _ROWS]
    rows.append((metric_name, f"{stats.metric:.4f}"))
    rows += [(name, f"{value:.4f}") for name, value in sorted(stats.extra.items())]
    rows.append(("runtime", stats.runtime))
    rows.append(("threads / batch", f"{stats.threads} / {stats.batch_size}"))
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{label.ljust(width)}  {value}" for label, value in rows)
