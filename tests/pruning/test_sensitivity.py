"""Pruning sensitivity: one layer at a time, the input model untouched; table, JSON and plot."""

from __future__ import annotations

import json

import pytest
import torch

from modelpress.errors import BadInputError
from modelpress.pipeline.recipe import Recipe
from modelpress.pruning import Prune
from modelpress.pruning.sensitivity import sensitivity


def test_weight_sensitivity(trained_mlp, digits, tmp_path):
    before = {k: v.clone() for k, v in trained_mlp.state_dict().items()}
    res = sensitivity(trained_mlp, digits, ratios=(0.0, 0.5, 0.99), progress=False)
    assert all(torch.equal(v, trained_mlp.state_dict()[k]) for k, v in before.items())  # untouched
    # measured on the held-out half of the calibration split, never on test
    assert res.layers == ["fc1", "fc2", "fc3"] and res.split_size == len(digits.calibration) // 2 == 128
    assert res.baseline > 0.9
    for name, vals in res.values.items():
        assert vals[0] == res.baseline, name  # pruning nothing changes nothing
        assert vals[2] < res.baseline - 0.05, name  # 99% of one layer gone costs accuracy
    text = res.table()
    assert "fc1" in text and "0.99" in text and f"{res.baseline:.4f}" in text
    d = json.loads(json.dumps(res.to_dict()))
    assert d["layers"]["fc2"] == list(res.values["fc2"]) and d["ratios"] == [0.0, 0.5, 0.99]
    png = res.plot(tmp_path / "sens.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_structured_sensitivity_lists_prunable_units(trained_mlp, digits):
    res = sensitivity(trained_mlp, digits, structure="neuron", ratios=(0.5,), limit=100, progress=False)
    assert res.layers == ["fc1", "fc2"] and res.split_size == 100  # the classifier is never pruned


def test_sensitivity_rejects_bad_ratios(trained_mlp, digits):
    with pytest.raises(BadInputError, match="sparsity"):
        sensitivity(trained_mlp, digits, ratios=(0.5, 1.0), progress=False)


@pytest.mark.parametrize("name", ["prune-weight", "prune-channel"])
def test_builtin_recipes_parse_and_end_with_fine_tuning(name):
    from importlib.resources import files

    recipe = Recipe.from_yaml(files("modelpress") / "recipes" / f"{name}.yaml")
    assert isinstance(recipe.steps[0].config, Prune)
    assert recipe.to_list()[-1].keys() == {"finetune"}
