"""`Share` validation: every bad value is one clear BadInputError; tying refuses mismatched blocks."""

from __future__ import annotations

import pytest
from torch import nn

from modelpress.errors import BadInputError
from modelpress.pipeline.recipe import Recipe
from modelpress.sharing.config import Share
from modelpress.sharing.tying import plan_groups


@pytest.mark.parametrize("bits", [0, 9, -1, 5.0, True, "5"])
def test_bits_outside_1_to_8_are_clear_errors(bits):
    with pytest.raises(BadInputError, match=r"`bits` of `Share` must be an int in 1\.\.8"):
        Share(bits=bits)
    with pytest.raises(BadInputError, match=r"`conv_bits` of `Share` must be an int in 1\.\.8"):
        Share(conv_bits=bits)


@pytest.mark.parametrize(("kwargs", "param"), [
    ({"method": "prune"}, "method"), ({"clusters": 1}, "clusters"), ({"clusters": 257}, "clusters"),
    ({"init": "kmeans++"}, "init"), ({"epochs": -1}, "epochs"), ({"lr": 0}, "lr"), ({"ratio": 0}, "ratio"),
    ({"ratio": 1.5}, "ratio"), ({"codebook": "int4"}, "codebook"), ({"entropy": 1}, "entropy"),
    ({"method": "tie"}, "blocks"), ({"method": "tie", "blocks": "(("}, "blocks"), ({"unique": 0}, "unique"),
])
def test_bad_values_name_the_field(kwargs, param):
    with pytest.raises(BadInputError, match=f"`{param}` of `Share`"):
        Share(**kwargs)


def test_bits_and_clusters_give_the_codes_per_layer():
    s = Share(bits=5, conv_bits=8)
    assert (s.codes_for(False), s.codes_for(True)) == (32, 256)
    c = Share(clusters=20)
    assert (c.codes_for(True), c.bits_for(False)) == (20, 5)


def test_recipe_key_share_builds_the_config():
    r = Recipe.from_list([{"share": {"method": "cluster", "bits": 4}}])
    assert r.steps[0].config == Share(bits=4) and r.steps[0].key == "share"


class _Blocks(nn.Module):
    def __init__(self, widths: list[int]) -> None:
        super().__init__()
        self.layer = nn.ModuleList(nn.Linear(8, w) for w in widths)


def test_tie_of_mismatched_shapes_is_a_clear_error():
    with pytest.raises(BadInputError, match=r"`blocks` of `Share` must name blocks of one shape.*layer\.0.*layer\.1"):
        plan_groups(_Blocks([8, 16, 8, 8]), r"layer\.\d+", 2)


def test_tie_needs_fewer_unique_than_blocks_and_two_matches():
    with pytest.raises(BadInputError, match="`unique` of `Share`"):
        plan_groups(_Blocks([8, 8]), r"layer\.\d+", 2)
    with pytest.raises(BadInputError, match="at least two blocks"):
        plan_groups(_Blocks([8, 8]), r"nothing", 1)


def test_deep_compression_recipe_trains_on_the_task_augmentation():
    # without it LeNet-5 / MNIST-5k lost 0.67 points (docs/bench-sharing.md, the noaug row)
    from modelpress.pipeline import Recipe

    steps = Recipe.resolve("deep-compression").steps
    assert {s.key: s.config.augment for s in steps} == {"prune": True, "finetune": True, "share": True}
