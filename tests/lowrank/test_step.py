"""The `LowRank` step: which layers it factors, the ranks it picks, per-layer timing, clear errors."""

import copy

import pytest
import torch
from torch import nn

import modelpress as mp
from modelpress.context import DeployTarget
from modelpress.errors import BadInputError
from modelpress.lowrank import FactoredLinear, LowRank, SpatialFactoredConv2d

TARGET = DeployTarget(batch_size=64, threads=1)


class Planted(nn.Module):
    """A 512 → 512 layer of planted rank 8 (factoring it cuts MACs 32×), a small head."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.big = nn.Linear(512, 512)
        with torch.no_grad():
            self.big.weight.copy_(torch.randn(512, 8, generator=g) @ torch.randn(8, 512, generator=g) / 8)
        self.head = nn.Linear(512, 4)

    def forward(self, x):
        return self.head(torch.relu(self.big(x)))


def _compress(model, config, **kw):
    from modelpress.source import attach_source

    attach_source(model, {"kind": "test"})
    x = torch.randn(1, 512)
    task = _FakeTask(x)
    return mp.compress_(model, config, task=task, target=TARGET, progress=False, **kw)


class _FakeTask:
    """Only what the step reads: a calibration split with one example."""

    def __init__(self, x):
        from modelpress.tasks.task import Split

        self.calibration = Split((x,), torch.zeros(1, dtype=torch.long))


def test_planted_layer_is_factored_at_its_rank_and_is_faster():
    model = Planted()
    ref = copy.deepcopy(model)
    log = _compress(model, LowRank(energy=0.999, round_to=8), select=mp.select.by_name("big"))
    (row,) = log.details["layers"]
    assert row["module"] == "big" and row["rank"] == 8 and row["energy"] == pytest.approx(1.0, abs=1e-6)
    assert row["decision"] == "kept", row["why"]
    assert row["new_ms"] < row["dense_ms"] * 0.95
    assert row["params_before"] == 512 * 512 + 512 and row["params_after"] == 8 * 1024 + 512
    assert isinstance(model.big, FactoredLinear)
    x = torch.randn(5, 512)
    assert torch.allclose(model(x), ref(x), atol=1e-4)
    assert [s.module for s in log.swapped] == ["big"]


def test_a_layer_not_faster_is_rolled_back_and_reported():
    model = Planted().train()
    # margin 0.49: a layer must take under 0.51× of the dense time; the 512 → 4 head at rank 2 cannot
    log = _compress(model, LowRank(rank=2, margin=0.49), select=mp.select.by_name("head"))
    (row,) = log.details["layers"]
    assert row["decision"] == "rolled back" and "not faster" in row["why"]
    assert type(model.head) is nn.Linear and log.swapped == []
    assert model.training and model.head.training  # timing exported copies; the model keeps its mode


@pytest.mark.parametrize(("config", "msg"), [
    (LowRank(rank=5), "rank 5 of layer `head` is above its full rank 4"),
    (LowRank(rank=300), "rank 300 of layer `big` is at or above the parameter break-even 256.0"),
    (LowRank(ratio=0.6, per_layer={"head": {"rank": 1}}), "ratio 0.6 of full rank 512.*layer `big`"),
])
def test_bad_ranks_are_clear_errors_naming_the_layer(config, msg):
    with pytest.raises(BadInputError, match=msg):
        _compress(Planted(), config)


def test_energy_needing_a_rank_above_break_even_leaves_the_layer_dense():
    model = nn.Sequential(nn.Linear(64, 64))
    with torch.no_grad():
        model[0].weight.copy_(torch.eye(64))  # flat spectrum: 0.9 of the energy needs rank 58 > 31
    log = mp.compress_(model, LowRank(energy=0.9), task=_FakeTask(torch.randn(1, 64)), target=TARGET)
    assert log.details["layers"] == []
    assert "needs rank 58" in log.skipped[0].why and log.skipped[0].module == "0"


class PaddedConv(nn.Conv2d):
    def forward(self, x):
        return super().forward(nn.functional.pad(x, (1, 1, 1, 1)))


class PlainSubclass(nn.Conv2d):
    pass


def test_convs_custom_forward_and_grouped_are_skipped_with_reasons():
    model = nn.Sequential(PlainSubclass(16, 32, 3, padding=1), PaddedConv(32, 32, 3), nn.Conv2d(32, 32, 3, groups=4))
    x = torch.randn(1, 16, 12, 12)
    log = mp.compress_(model, LowRank(rank=4, objective="size", runs=5), task=_FakeTask(x), target=TARGET)
    why = {s.module: s.why for s in log.skipped}
    assert "overrides forward" in why["1"] and "grouped" in why["2"]
    assert [r["module"] for r in log.details["layers"]] == ["0"]
    assert isinstance(model[0], SpatialFactoredConv2d) and model[0].meta["padding"] == [1, 1]
    assert log.details["layers"][0]["dense_ms"] > 0  # timed even when size decides
