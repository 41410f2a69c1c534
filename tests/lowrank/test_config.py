"""`LowRank` configuration: validation, per-layer settings, YAML."""

import pytest

from modelpress.errors import BadInputError
from modelpress.lowrank import LowRank
from modelpress.pipeline.recipe import Recipe


def test_default_is_energy_09():
    c = LowRank()
    assert c.energy == 0.9 and c.setting_for("fc1") == ("energy", 0.9)


def test_per_layer_overrides_first_match():
    c = LowRank(ratio=0.25, per_layer={"fc1": {"rank": 64}, "fc.*": {"energy": 0.95}})
    assert c.setting_for("fc1") == ("rank", 64)
    assert c.setting_for("fc2") == ("energy", 0.95)
    assert c.setting_for("conv") == ("ratio", 0.25)


@pytest.mark.parametrize(("kwargs", "msg"), [
    ({"rank": 0}, "`rank` of `LowRank` must be an int >= 1"),
    ({"rank": 2.5}, "`rank` of `LowRank` must be an int >= 1"),
    ({"ratio": 0}, "`ratio` of `LowRank` must be a fraction in \\(0, 1\\]"),
    ({"energy": 1.5}, "`energy` of `LowRank` must be a fraction"),
    ({"rank": 8, "ratio": 0.5}, "exactly one of them"),
    ({"conv": "depth"}, "`conv` of `LowRank` must be one of"),
    ({"round_to": 12}, "`round_to` of `LowRank` must be 'auto' or one of"),
    ({"objective": "speed"}, "`objective` of `LowRank` must be one of"),
    ({"margin": 0.7}, "`margin` of `LowRank`"),
    ({"runs": 2}, "`runs` of `LowRank`"),
    ({"per_layer": {"fc1": 64}}, "per_layer\\['fc1'\\]"),
    ({"per_layer": {"fc1": {"rank": 0}}}, "per_layer\\['fc1'\\].rank"),
    ({"per_layer": {"(": {"rank": 4}}}, "valid regular expressions"),
])
def test_bad_values_are_clear_errors(kwargs, msg):
    with pytest.raises(BadInputError, match=msg):
        LowRank(**kwargs)


def test_yaml_round_trip():
    r = Recipe.from_yaml("- lowrank: {ratio: 0.25, per_layer: {fc1: {rank: 32}}, select: {types: [linear]}}\n")
    c = r.steps[0].config
    assert isinstance(c, LowRank) and c.setting_for("fc1") == ("rank", 32)
    again = Recipe.from_yaml(r.to_yaml()).steps[0].config
    assert again == c
