"""measure / measure_onnx / compare_models end to end on the digits task."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.nn.utils import parametrize

from modelpress.artifact.onnx import export_onnx
from modelpress.errors import BadInputError
from modelpress.measure import Stats, compare_models, measure, measure_onnx
from modelpress.tasks.train import evaluate


@pytest.fixture(scope="module")
def torch_stats(digits_model, digits_task):
    return measure(digits_model, digits_task, warmup=2, runs=10)


def test_measure_digits(torch_stats, digits_model, digits_task):
    s = torch_stats
    assert isinstance(s, Stats) and s.runtime == "torch" and s.threads == 1 and s.batch_size == 1
    n = 64 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10  # 8×8 inputs
    assert s.params == s.nonzero_params == n
    assert s.macs == 64 * 300 + 300 * 100 + 100 * 10
    assert n * 4 < s.size_bytes < n * 4 + 16_384
    assert s.latency_p90_ms >= s.latency_ms > 0
    assert s.peak_mem_bytes >= n * 4
    assert s.metric == pytest.approx(evaluate(digits_model, digits_task)) and s.metric > 0.9


def test_measure_leaves_the_model_alone(digits_model, digits_task):
    model = copy.deepcopy(digits_model).train()

    class Keep(torch.nn.Module):
        def forward(self, w):
            return w

    parametrize.register_parametrization(model.fc2, "weight", Keep())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    measure(model, digits_task, batch_size=4, warmup=0, runs=2)
    assert model.training and model.fc1.training
    assert parametrize.is_parametrized(model.fc2, "weight")
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_batch_larger_than_the_split_repeats_examples(digits_model, digits_task):
    small = type(digits_task)(**{**digits_task.__dict__, "test": digits_task.test.head(3)})
    s = measure(digits_model, small, batch_size=8, warmup=0, runs=2, progress=True)
    assert s.batch_size == 8 and s.peak_mem_bytes > 0


def test_measure_onnx_matches_torch(torch_stats, digits_model, digits_task, tmp_path):
    path = export_onnx(digits_model, digits_task.example_inputs, tmp_path / "m.onnx")
    s = measure_onnx(path, digits_task, macs=torch_stats.macs, warmup=2, runs=10)
    assert s.runtime == "onnxruntime" and s.macs == torch_stats.macs
    assert abs(s.metric - torch_stats.metric) <= 0.002
    assert (s.params, s.nonzero_params) == (torch_stats.params, torch_stats.nonzero_params)
    assert s.size_bytes == path.stat().st_size
    assert s.latency_p90_ms >= s.latency_ms > 0
    assert s.peak_mem_bytes >= s.params * 4


def test_compare_models_pruned_vs_dense(digits_model, digits_task):
    pruned = copy.deepcopy(digits_model)
    with torch.no_grad():
        w = pruned.fc1.weight
        w[w.abs() < w.abs().median()] = 0.0  # half of fc1 zeroed
    c = compare_models(digits_model, pruned, digits_task, runs=5)
    assert c.ratios["params"] == 1.0
    assert c.ratios["nonzero_params"] == pytest.approx(1 - (64 * 300 // 2) / c.a.params, abs=1e-3)
    assert c.ratios["size_bytes"] < 1.0  # the artifact stores the sparse weight packed
    assert c.ratios["latency_ms"] > 0 and c.metric_name == "accuracy"


@pytest.mark.parametrize("kwargs", [{"threads": 0}, {"batch_size": 0}, {"runs": 0}, {"warmup": -1}])
def test_bad_arguments(digits_model, digits_task, kwargs):
    with pytest.raises(BadInputError):
        measure(digits_model, digits_task, **kwargs)


def test_bad_task_and_missing_file(digits_model, digits_task, tmp_path):
    with pytest.raises(BadInputError, match="Task"):
        measure(digits_model, "digits")
    with pytest.raises(BadInputError, match="does not exist"):
        measure_onnx(tmp_path / "none.onnx", digits_task)
