"""Per-layer sensitivity for any step: apply a step's config to one layer at a time, measure, restore.

Two levels, used by every technique:

- :func:`one_at_a_time` — the loop: change one named layer in place, score the model (the task metric
  and the mean squared change of its outputs), undo; most sensitive first. Quantization's ``max_drop``
  runs it with ready-made quantized modules swapped in and back.
- :func:`sensitivity` — any step config (``Prune``, ``Quantize``, a later technique's) applied through
  its handler to a deep copy with a selector naming one layer (`modelpress.select.by_name`), for a
  sweep of configs; the model passed in is never changed. ``modelpress sensitivity --step KEY`` prints
  its table and writes its JSON, plot and HTML page.

**What it is measured on.** Never ``test`` (the final figures come from it). The task's calibration
split is cut in two: the steps see its first half as their calibration split (ranges, choices), and
the metric is measured on the second half, which no step of the scan calibrates on. For the built-in
tasks the calibration split is drawn from ``train`` (`modelpress.tasks.data`), so these examples are
training data of the baseline model, which often fits them perfectly (LeNet-5 on mnist-5k: accuracy
1.0000 with any one layer int8- or int4-quantized). So every cell also records the outputs' SQNR
against the unchanged model (`sqnr_db`): it keeps ranking layers when the metric cannot move. The JSON
records exactly which examples were used.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from modelpress.context import StepContext
from modelpress.errors import bad_value
from modelpress.select import Selector, by_name
from modelpress.tasks.task import Split, Task

__all__ = ["LayerScore", "SensitivityResult", "held_out", "layers_for", "metric_drop", "one_at_a_time", "score",
           "sensitivity", "sqnr_db"]


@dataclass(frozen=True)
class LayerScore:
    """One layer changed alone: the metric, its drop from the unchanged model (positive = worse), the
    mean squared change of the model's outputs (tie-breaker: many layers change no prediction) and the
    outputs' signal-to-noise ratio against the unchanged model's, in dB (`sqnr_db`)."""

    module: str
    metric: float
    drop: float
    output_mse: float
    sqnr: float = float("inf")


def sqnr_db(reference: Tensor, outputs: Tensor) -> float:
    """``10 log10(Σ ref² / Σ (out − ref)²)`` in dB (inf when equal): how far a change moved the outputs.
    Unlike the metric it does not saturate when the examples are ones the model fits perfectly."""
    ref = reference.detach().double()
    noise = float((outputs.detach().double() - ref).pow(2).sum())
    if noise == 0.0:
        return float("inf")
    return 10.0 * math.log10(max(float(ref.pow(2).sum()), 1e-300) / noise)


def score(model: nn.Module, task: Task, split: Split) -> tuple[float, Tensor]:
    """The task metric of ``model`` on ``split`` and its raw outputs ``(n, ...)`` (one pass for both)."""
    from modelpress.tasks.train import torch_predict

    out = torch_predict(model, batch_size=64)(split.inputs)
    return task.metric.on_outputs(out, split), out


def metric_drop(task: Task, base: float, metric: float) -> float:
    """How much worse ``metric`` is than ``base`` (positive = worse, whichever way the metric points)."""
    return (base - metric) if task.metric.higher_is_better else (metric - base)


def one_at_a_time(model: nn.Module, names: Sequence[str], change: Callable[[str], Callable[[], None]],
                  task: Task, split: Split) -> tuple[float, Tensor, list[LayerScore]]:
    """For each name: ``undo = change(name)`` changes ``model`` in place, the model is scored on
    ``split``, then ``undo()`` restores it (also when scoring raises). Returns the unchanged model's
    metric, its outputs, and the scores, most sensitive first (drop, then output MSE)."""
    base, ref = score(model, task, split)
    out: list[LayerScore] = []
    for name in names:
        undo = change(name)
        try:
            metric, o = score(model, task, split)
        finally:
            undo()
        mse = float((o.float() - ref.float()).pow(2).mean())
        out.append(LayerScore(name, metric, metric_drop(task, base, metric), mse, sqnr_db(ref, o)))
    out.sort(key=lambda s: (s.drop, s.output_mse), reverse=True)
    return base, ref, out


def held_out(task: Task, limit: int | None = None) -> tuple[Task, Split, str]:
    """``(task the steps see, split the metric is measured on, what that split is)``: the calibration
    split's first half becomes the steps' calibration split, its second half (at most ``limit``
    examples) is measured on. Raises BadInputError when the calibration split has fewer than 2 examples."""
    cal = task.calibration
    if cal is None or len(cal) < 2:
        raise bad_value("calibration", "sensitivity", "a split of at least 2 examples (half calibrates, half "
                        "is measured on)", None if cal is None else len(cal))
    half = len(cal) // 2
    end = len(cal) if limit is None else min(len(cal), half + int(limit))
    measured = Split(tuple(t[half:end] for t in cal.inputs), cal.targets[half:end], "sensitivity")
    steps_see = dataclasses.replace(task, calibration=cal.head(half))
    what = (f"calibration[{half}:{end}] of task {task.name}: held out from the calibration examples the steps "
            f"use (calibration[0:{half}]) and from test; drawn from the train split")
    return steps_see, measured, what


def _apply(model: nn.Module, config: Any, ctx: StepContext) -> None:
    # the dispatch table is data (config type -> handler); imported here because pipeline/ sits above search/
    from modelpress.pipeline.steps import kind_of

    kind_of(config).apply(model, config, ctx)


def layers_for(model: nn.Module, config: Any, task: Task | None = None, select: Selector | None = None) -> list[str]:
    """The layers ``config``'s step would change, in module order: for ``Prune`` its weight targets or
    structured units, for ``Quantize`` its planned layers, for any other step the modules its log
    reports as swapped when run on a copy of the model."""
    from modelpress.pruning.config import Prune
    from modelpress.quantization.config import Quantize

    if isinstance(config, Prune):
        from modelpress.pruning.sensitivity import layers_for as prune_layers

        return prune_layers(model, config.structure, task, select)
    if isinstance(config, Quantize):
        from modelpress.quantization.ptq import plan_layers

        return [p.name for p in plan_layers(model, config, select)[0]]
    from modelpress.pipeline.steps import kind_of

    if "epochs" in {f.name for f in dataclasses.fields(config)}:
        # a training step changes every weight at once; running it only to list layers would train
        raise bad_value("step", "sensitivity", "a step that changes some layers (prune, quantize, ...)",
                        kind_of(config).key, "a training step such as finetune has no per-layer form.")
    probe = copy.deepcopy(model)
    log = kind_of(config).apply(probe, config, StepContext(task=task, select=select, progress=False))
    return [s.module for s in log.swapped]


@dataclass(frozen=True)
class SensitivityResult:
    """The task metric after applying a step to each layer alone: ``values[layer][i]`` for the i-th
    config of the sweep, labelled ``columns[i]`` (a ratio for pruning, a mode for quantization).

    ``step``: the recipe key; ``label``: what was applied (e.g. "weight" pruning, "int8-static");
    ``sweep``: the config field varied (e.g. "sparsity"); ``baseline``: the unchanged model's metric;
    ``split`` / ``split_size``: what the metric was measured on and how many examples; ``sqnr``: per
    cell, the outputs' SQNR in dB against the unchanged model's (`sqnr_db`) — the figure that still
    ranks layers when the metric does not move (examples the model fits perfectly).
    """

    step: str
    label: str
    metric_name: str
    baseline: float
    sweep: str
    columns: tuple[Any, ...]
    values: dict[str, tuple[float, ...]]
    split: str
    split_size: int
    configs: tuple[dict[str, Any], ...] = ()
    sqnr: dict[str, tuple[float, ...]] = dataclasses.field(default_factory=dict)

    @property
    def layers(self) -> list[str]:
        return list(self.values)

    @property
    def ratios(self) -> tuple[Any, ...]:
        """The sweep's values (the pruning ratios for ``prune``)."""
        return self.columns

    @property
    def structure(self) -> str:
        return self.label

    def table(self) -> str:
        """A plain-text table: one row per layer, one column per config of the sweep, the baseline on top."""
        cols = [f"{c:.2f}" if isinstance(c, float) else str(c) for c in self.columns]
        cw = max([7] + [len(c) for c in cols])
        w = max([len("layer")] + [len(n) for n in self.values])
        head = f"{'layer':<{w}}  " + "  ".join(f"{c:>{cw}}" for c in cols)
        title = (f"{self.metric_name} after {self.step} ({self.label}) of one layer, by {self.sweep}; "
                 f"baseline {self.baseline:.4f} on {self.split_size} held-out calibration examples")
        lines = [title, head, "-" * len(head)]
        for name, vals in self.values.items():
            lines.append(f"{name:<{w}}  " + "  ".join(f"{v:>{cw}.4f}" for v in vals))
        if self.sqnr:
            lines += ["", "output SQNR against the unchanged model, dB (higher = less changed)", head,
                      "-" * len(head)]
            for name, vals in self.sqnr.items():
                lines.append(f"{name:<{w}}  " + "  ".join(f"{v:>{cw}.1f}" for v in vals))
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "structure": self.label, "label": self.label, "metric_name": self.metric_name,
                "baseline": self.baseline, "sweep": self.sweep, "ratios": list(self.columns),
                "columns": list(self.columns), "split": self.split, "split_size": self.split_size,
                "configs": list(self.configs), "layers": {n: list(v) for n, v in self.values.items()},
                # JSON has no inf: an unchanged output is null
                "sqnr_db": {n: [None if math.isinf(x) else round(x, 3) for x in v] for n, v in self.sqnr.items()}}

    def plot(self, path: str | Path) -> Path:
        """Write a PNG: the metric (left) and the output SQNR (right) against the sweep, one line per
        layer (bars when the sweep has one config), the baseline metric dashed. Returns the path."""
        import matplotlib

        matplotlib.use("Agg")  # no display here; write files only
        import matplotlib.pyplot as plt

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        panels = [(self.values, self.metric_name, self.baseline)]
        if self.sqnr:
            finite = {n: tuple(math.nan if math.isinf(x) else x for x in v) for n, v in self.sqnr.items()}
            panels.append((finite, "output SQNR vs unchanged, dB", None))
        fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.5), squeeze=False)
        for ax, (data, ylabel, base) in zip(axes[0], panels, strict=True):
            self._panel(ax, data, ylabel, base)
        fig.suptitle(f"{self.step} sensitivity, one layer at a time ({self.split_size} held-out examples)")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path

    def _panel(self, ax: Any, data: dict[str, tuple[float, ...]], ylabel: str, base: float | None) -> None:
        if len(self.columns) == 1:
            ax.barh(list(data), [v[0] for v in data.values()], color="#27a")
            if base is not None:
                ax.axvline(base, color="black", linestyle="--", linewidth=1, label="baseline")
            ax.set_xlabel(f"{ylabel} ({self.columns[0]})")
            ax.invert_yaxis()
        else:
            numeric = all(isinstance(c, (int, float)) for c in self.columns)
            xs = list(self.columns) if numeric else list(range(len(self.columns)))
            for name, vals in data.items():
                ax.plot(xs, vals, marker="o", label=name)
            if not numeric:
                ax.set_xticks(xs, [str(c) for c in self.columns])
            if base is not None:
                ax.axhline(base, color="black", linestyle="--", linewidth=1, label="baseline")
            ax.set_xlabel(self.sweep if self.label in map(str, self.columns) else f"{self.sweep} ({self.label})")
            ax.set_ylabel(ylabel)
        if len(self.columns) > 1 or base is not None:
            ax.legend(fontsize=7, loc="best", ncol=2 if len(data) > 8 else 1)
        ax.grid(alpha=0.3)


def _label(config: Any) -> str:
    for field in ("structure", "mode"):
        if hasattr(config, field):
            return str(getattr(config, field))
    return type(config).__name__


def _swept(configs: Sequence[Any]) -> tuple[str, tuple[Any, ...]]:
    """The field that differs between ``configs`` and its values (``("config", (1, 2, ...))`` if several
    differ; the label when there is one config)."""
    if len(configs) == 1:
        return "config", (_label(configs[0]),)
    dicts = [dataclasses.asdict(c) for c in configs]
    differ = [k for k in dicts[0] if len({repr(d[k]) for d in dicts}) > 1]
    if len(differ) == 1:
        return differ[0], tuple(d[differ[0]] for d in dicts)
    return "config", tuple(range(1, len(configs) + 1))


def sensitivity(model: nn.Module, task: Task, configs: Any | Sequence[Any], *, select: Selector | None = None,
                limit: int | None = None, progress: bool = True, seed: int = 0) -> SensitivityResult:
    """Apply each step config in ``configs`` to each layer alone (one deep copy per cell; ``model`` is
    never changed) and measure ``task.metric`` on held-out calibration data (:func:`held_out`).

    ``configs``: one config or a sweep of configs of one step kind (``Prune``, ``Quantize``, ...);
    ``select``: which layers (default: every layer the step would change, :func:`layers_for`);
    ``limit``: at most this many examples are measured on. Raises BadInputError for an empty sweep, a mix
    of step kinds, a step that changes no layer of the model, or a task without a calibration split of at
    least 2 examples.
    """
    from tqdm.auto import tqdm

    from modelpress.pipeline.steps import kind_of

    sweep = list(configs) if isinstance(configs, (list, tuple)) else [configs]
    if not sweep:
        raise bad_value("configs", "sensitivity", "one step config or a non-empty list of them", configs)
    keys = {kind_of(c).key for c in sweep}
    if len(keys) > 1:
        raise bad_value("configs", "sensitivity", "configs of one step kind", sorted(keys))
    steps_task, split, what = held_out(task, limit)
    baseline, ref = score(model, steps_task, split)
    layers = layers_for(model, sweep[0], steps_task, select)
    if not layers:
        raise bad_value("configs", "sensitivity", "a step that changes some layer of this model (with this "
                        "selection)", f"{keys.copy().pop()} changing none", "choose another step, or select layers "
                        "it handles; a training step such as finetune changes all weights at once.")
    values: dict[str, tuple[float, ...]] = {}
    sqnr: dict[str, tuple[float, ...]] = {}
    bar = tqdm(total=len(layers) * len(sweep), disable=None if progress else True, desc="sensitivity", leave=False)
    try:
        for name in layers:
            row, row_sqnr = [], []
            ctx = StepContext(task=steps_task, select=by_name(re.escape(name)), progress=False, seed=seed,
                              reference=model)
            for config in sweep:
                changed = copy.deepcopy(model)
                _apply(changed, config, ctx)
                metric, out = score(changed, steps_task, split)
                row.append(metric)
                row_sqnr.append(sqnr_db(ref, out))
                bar.update(1)
            values[name], sqnr[name] = tuple(row), tuple(row_sqnr)
    finally:
        bar.close()
    field, columns = _swept(sweep)
    return SensitivityResult(keys.pop(), _label(sweep[0]), task.metric.name, baseline, field, columns, values,
                             what, len(split), tuple(c.to_dict() if hasattr(c, "to_dict") else
                                                     dataclasses.asdict(c) for c in sweep), sqnr)
