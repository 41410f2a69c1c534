"""Per-output-channel codebooks, float16 biases, distilled codebook fine-tuning, and what a later
`quantize` says about clustered layers."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import modelpress as mp
from modelpress.artifact import load, save
from modelpress.errors import BadInputError
from modelpress.sharing.config import Share
from modelpress.sharing.modules import ClusteredConv2d, ClusteredLinear, cluster_weight
from modelpress.tasks.train import evaluate


def _planted_rows() -> torch.Tensor:
    """6 rows of 40 weights; row r takes only the values ±(r + 1) / 8 (and exact zeros)."""
    gen = torch.Generator().manual_seed(0)
    signs = torch.where(torch.rand(6, 40, generator=gen) < 0.5, -1.0, 1.0)
    w = signs * (torch.arange(1, 7).float() / 8).reshape(6, 1)
    w[torch.rand(6, 40, generator=gen) < 0.3] = 0.0
    return w


def test_per_channel_codebooks_recover_each_rows_planted_values_exactly():
    w = _planted_rows()
    codebook, _, zero = cluster_weight(w, 3, per="channel")  # zero code + 2 centroids per row
    assert zero and codebook.shape == (6, 2)
    expected = (torch.arange(1, 7).float() / 8).reshape(6, 1) * torch.tensor([-1.0, 1.0])
    assert torch.equal(codebook, expected)
    base = nn.Linear(40, 6)
    with torch.no_grad():
        base.weight.copy_(w)
    m = ClusteredLinear.from_float(base, 3, per="channel")
    assert torch.equal(m.weight, w)
    # one codebook for the whole layer has 2 centroids for 12 distinct non-zero values: not exact
    assert not torch.equal(ClusteredLinear.from_float(base, 3).weight, w)


def test_per_channel_gradient_is_each_rows_summed_weight_gradient():
    torch.manual_seed(0)
    base = nn.Conv2d(3, 5, 3)
    with torch.no_grad():
        base.weight[base.weight.abs() < 0.05] = 0.0
    m = ClusteredConv2d.from_float(base, 8, per="channel")
    x = torch.randn(2, 3, 6, 6)
    w = m.weight.detach().clone().requires_grad_(True)
    torch.nn.functional.conv2d(x, w, m.bias.detach()).pow(2).sum().backward()
    m(x).pow(2).sum().backward()
    flat_idx, flat_grad = m.indices.reshape(5, -1), w.grad.reshape(5, -1)
    expected = torch.zeros(5, 8).scatter_add_(1, flat_idx, flat_grad)
    assert m.zero_code and m.codebook.shape == (5, 7)
    assert torch.allclose(m.codebook.grad, expected[:, 1:], rtol=1e-5, atol=1e-6)
    assert torch.equal(m.weight == 0, base.weight == 0)


@pytest.mark.parametrize("dtype", ["float32", "float16", "int8"])
def test_per_channel_pack_unpack_is_bit_exact(dtype):
    base = nn.Linear(40, 6)
    with torch.no_grad():
        base.weight.copy_(_planted_rows() + 0.01 * torch.randn(6, 40, generator=torch.Generator().manual_seed(1)))
    m = ClusteredLinear.from_float(base, 4, per="channel")
    m.round_codebook(dtype)
    tensors, meta = m.pack()
    assert meta["per"] == "channel" and tensors["codebook"].shape == (6, 4)
    back = ClusteredLinear.unpack(tensors, meta)
    assert back.per == "channel" and torch.equal(back.weight, m.weight)


def test_float16_bias_is_stored_in_two_bytes_and_decodes_exactly():
    m, (x,) = ClusteredLinear.example()
    fp32_bias = m.bias.detach().clone()
    m.round_bias("float16")
    assert torch.equal(m.bias.detach(), fp32_bias.half().float())
    tensors, meta = m.pack()
    assert tensors["bias"].dtype == torch.float16
    back = ClusteredLinear.unpack(tensors, meta)
    assert torch.equal(back(x), m(x))
    assert back.pack()[0]["bias"].dtype == torch.float16  # a loaded model saves the same bytes again
    with torch.no_grad():
        m.bias.add_(1e-4)  # moved off the float16 grid (e.g. trained after rounding): stored float32
    assert m.pack()[0]["bias"].dtype == torch.float32
    with pytest.raises(BadInputError, match="`dtype` of `round_bias`"):
        m.round_bias("int8")


@pytest.mark.parametrize(("kwargs", "param"), [
    ({"bias": "int8"}, "bias"), ({"per": "tensor"}, "per"), ({"distill": 1}, "distill"),
    ({"alpha": 1.5}, "alpha"), ({"temperature": 0}, "temperature"),
])
def test_new_share_fields_are_validated(kwargs, param):
    with pytest.raises(BadInputError, match=f"`{param}` of `Share`"):
        Share(**kwargs)


def test_step_per_channel_and_float16_biases_round_trip(trained_mlp, digits, tmp_path):
    mlp = copy.deepcopy(trained_mlp)
    layer_cos = mp.compress_(copy.deepcopy(trained_mlp), Share(bits=3), task=digits).details["layers"]
    log = mp.compress_(mlp, Share(bits=3, per="channel", bias="float16"), task=digits)
    for name, row in log.details["layers"].items():
        m = mlp.get_submodule(name)
        assert row["per"] == "channel" and row["codebook_values"] == m.indices.shape[0] * 8
        # a codebook per row is closer to the weights than one per layer at the same bits
        assert row["cosine_before_finetune"] > layer_cos[name]["cosine_before_finetune"]
        assert torch.equal(m.bias.detach(), m.bias.detach().half().float())
    back = load(save(mlp, tmp_path / "a"))
    x = digits.test.inputs[0][:50]
    assert torch.equal(back(x), mlp(x))


def test_distilled_codebook_finetuning_needs_a_reference_and_uses_it(trained_mlp, digits):
    mlp = copy.deepcopy(trained_mlp)
    with pytest.raises(BadInputError, match="`distill` of `Share`"):
        mp.compress_(mlp, Share(bits=2, epochs=1, distill=True), task=digits, progress=False)
    mlp = copy.deepcopy(trained_mlp)
    fc3 = copy.deepcopy(trained_mlp.fc3)
    untuned = copy.deepcopy(trained_mlp)
    mp.compress_(untuned, Share(bits=2, epochs=0), task=digits, select=mp.select.exclude("fc3"))
    before = evaluate(untuned, digits)
    log = mp.compress_(mlp, Share(bits=2, epochs=2, lr=1e-3, distill=True), task=digits, progress=False,
                       reference=trained_mlp, select=mp.select.exclude("fc3"))
    assert log.details["finetune"] == "distillation from the reference"
    assert len(log.details["finetune_losses"]) == 2
    assert torch.equal(mlp.fc3.weight, fc3.weight)  # declined layer: bit-identical
    assert evaluate(mlp, digits) > before  # 2-bit codebooks lose accuracy; distilled fine-tuning wins some back


def test_quantize_after_share_reports_each_clustered_layer_in_report_and_summary(trained_mlp, digits, tmp_path):
    import json

    from modelpress.pipeline import Recipe, run
    from modelpress.pipeline.changes import step_lines
    from modelpress.pipeline.run import MeasureSettings

    recipe = Recipe.from_list([{"share": {"bits": 5}}, {"quantize": {"mode": "int8-dynamic"}}])
    run(recipe, digits, model=copy.deepcopy(trained_mlp), out=tmp_path / "out", progress=False,
        settings=MeasureSettings(runs=2, warmup=1))
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    quantize = report["steps"][1]
    why = {s["module"]: s["why"] for s in quantize["skipped"]}
    assert sorted(why) == ["fc1", "fc2", "fc3"] and not quantize["swapped"]
    assert all("ClusteredLinear" in w and "codebook: int8" in w for w in why.values())
    printed = [line for line in step_lines(report) if line.startswith("2. quantize: skipped")]
    assert len(printed) == 3 and all("codebook: int8" in line for line in printed)
