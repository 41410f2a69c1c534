"""`Prune` validation: every bad value is a BadInputError in the project's message shape."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from modelpress.errors import BadInputError
from modelpress.pruning import Prune


@pytest.mark.parametrize("bad", [1.0, 1, -0.1, 1.5, float("nan"), True, "0.5", None])
def test_sparsity_outside_unit_interval_is_a_clear_error(bad):
    with pytest.raises(BadInputError, match=r"`sparsity` of `Prune` must be a fraction in \[0, 1\)"):
        Prune(sparsity=bad)


def test_zero_sparsity_is_allowed():
    assert Prune(sparsity=0).sparsity == 0


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"structure": "filter"}, "structure"),
        ({"scope": "model"}, "scope"),
        ({"criterion": "l3"}, "criterion"),
        ({"criterion": "taylor"}, "criterion"),  # weight + taylor: structured only
        ({"schedule": "gradual", "structure": "channel"}, "schedule"),
        ({"steps": 0}, "steps"),
        ({"epochs": 1.5}, "epochs"),
        ({"lr": 0}, "lr"),
        ({"round_to": 12}, "round_to"),
        ({"round_to": 128}, "round_to"),
        ({"ffn": 1.2}, "ffn"),
        ({"per_layer": {"fc1": 1.0}}, "per_layer['fc1']"),
        ({"per_layer": {"(": 0.5}}, "per_layer"),
        ({"per_layer": [1, 2]}, "per_layer"),
    ],
)
def test_bad_values_name_the_parameter(kwargs, param):
    with pytest.raises(BadInputError) as e:
        Prune(**kwargs)
    assert str(e.value).startswith(f"`{param}` of `Prune` must be")


def test_per_layer_becomes_json_able_pairs_and_first_match_wins():
    p = Prune(sparsity=0.5, per_layer={"fc3": 0.1, "fc.*": 0.9})
    assert p.per_layer == (("fc3", 0.1), ("fc.*", 0.9))
    assert (p.sparsity_for("fc3"), p.sparsity_for("fc1"), p.sparsity_for("conv")) == (0.1, 0.9, 0.5)
    assert json.loads(json.dumps(asdict(p)))["per_layer"] == [["fc3", 0.1], ["fc.*", 0.9]]
    assert Prune(**json.loads(json.dumps(asdict(p)))) == p  # a saved config round-trips


def test_ffn_fraction():
    assert Prune(structure="head", sparsity=0.4).ffn_sparsity == 0.4
    assert Prune(structure="head", sparsity=0.4, ffn=False).ffn_sparsity == 0.0
    assert Prune(structure="head", sparsity=0.4, ffn=0.25).ffn_sparsity == 0.25
