"""report.json and the summary lines say what each step swapped, what it skipped, and when it changed
nothing."""

from __future__ import annotations

import torch
from torch import nn

from modelpress.pipeline import MeasureSettings, Recipe, run
from modelpress.pipeline.changes import mark_changed, step_lines
from modelpress.pipeline.report import render_html
from modelpress.pipeline.run import compress_
from modelpress.quantization import Quantize
from modelpress.tasks import get
from modelpress.tasks.models import build


class Gain(nn.Module):
    """A custom layer with its own parameter, which neither pruning nor quantization handles."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.g = nn.Parameter(torch.ones(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.g


def test_swapped_and_unchanged_steps_are_in_report_json_and_the_summary():
    task = get("digits")
    model = build("lenet-300-100", input_shape=(1, 8, 8)).eval()
    recipe = Recipe.from_list([{"prune": {"sparsity": 0.0}}, {"quantize": {"mode": "int8-dynamic"}}])
    res = run(recipe, task, model=model, deploy=False, progress=False, settings=MeasureSettings(warmup=0, runs=2))
    prune, quant = res.report["steps"]
    assert prune["changed"] is False and prune["swapped"] == []
    assert quant["changed"] is True
    assert [(s["module"], s["from"], s["to"]) for s in quant["swapped"]] == [
        ("fc1", "Linear", "QuantLinear"), ("fc2", "Linear", "QuantLinear"), ("fc3", "Linear", "QuantLinear")]
    lines = step_lines(res.report)
    assert lines[0].startswith("1. prune: changed nothing (sparsity 0.0 removes no weight")
    assert lines[1] == "2. quantize: swapped 3 module(s): Linear -> QuantLinear x3"
    page = render_html(res.report)
    assert "Steps that changed nothing" in page and "<code>fc2</code>" in page


def test_skipped_modules_are_summary_lines():
    model = nn.Sequential(nn.Linear(4, 4), Gain(4), nn.GRU(4, 2))
    log = compress_(model, Quantize(mode="int8-dynamic"))
    report = {"steps": [log.to_dict() | {"changed": True}]}
    assert step_lines(report) == [
        "1. quantize: swapped 1 module(s): Linear -> QuantLinear x1",
        "1. quantize: skipped 1 (Gain has weights but quantize (int8-dynamic) handles only Linear, Conv2d, Embedding)",
        "1. quantize: skipped 2 (GRU has weights but quantize (int8-dynamic) handles only Linear, Conv2d, Embedding)"]


def test_changed_is_judged_from_the_stage_before():
    base = {"size_bytes": 10, "params": 5, "nonzero_params": 5, "macs": 7, "metric": 0.9}
    steps = [{"name": "finetune", "swapped": [], "details": {}, "stats": {**base, "metric": 0.91}},
             {"name": "finetune", "swapped": [], "details": {}, "stats": {**base, "metric": 0.91}},
             {"name": "quantize", "swapped": [{"module": "a"}], "details": {}, "stats": {**base, "metric": 0.91}},
             {"name": "prune", "swapped": [], "details": {}, "stats": base, "error": "rolled back: boom"}]
    mark_changed(steps, base)
    assert [s["changed"] for s in steps] == [True, False, True, False]
