"""The `Decompose` step: ranks (vbmf, ratio, int), skips with reasons, clear errors naming the layer."""

import pytest
import torch
from torch import nn

import modelpress as mp
from modelpress.context import DeployTarget
from modelpress.decomposition import CPConv2d, Decompose, TuckerConv2d
from modelpress.decomposition.step import decompose_ranks
from modelpress.errors import BadInputError
from modelpress.tasks.task import Split

TARGET = DeployTarget(batch_size=8, threads=1)


class _Task:
    def __init__(self, x):
        self.calibration = Split((x,), torch.zeros(1, dtype=torch.long))


class PaddedConv(nn.Conv2d):
    def forward(self, x):
        return super().forward(nn.functional.pad(x, (1, 1, 1, 1)))


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1, groups=64),
                         nn.Conv2d(64, 32, 1), PaddedConv(32, 32, 3))


def _run(model, config, **kw):
    return mp.compress_(model, config, task=_Task(torch.randn(1, 64, 16, 16)), target=TARGET, progress=False, **kw)


@pytest.mark.parametrize(("method", "cls"), [("tucker", TuckerConv2d), ("cp", CPConv2d)])
def test_ratio_decomposes_the_kxk_conv_and_skips_the_rest_with_reasons(method, cls):
    model = _net()
    log = _run(model, Decompose(method=method, ratio=0.25, objective="size", runs=5))
    why = {s.module: s.why for s in log.skipped}
    assert "grouped / depthwise" in why["2"] and "1×1 kernel" in why["3"] and "overrides forward" in why["4"]
    (row,) = log.details["layers"]
    assert row["module"] == "0" and row["decision"] == "kept" and row["dense_ms"] > 0
    assert row["rank"] == ([16, 16] if method == "tucker" else 16)
    assert isinstance(model[0], cls) and row["params_after"] < row["params_before"]
    assert log.details["method"] == method


def test_vbmf_finds_the_planted_tucker_ranks():
    model = nn.Sequential(nn.Conv2d(64, 64, 3, padding=1))
    g = torch.Generator().manual_seed(0)
    core = torch.randn(16, 16, 3, 3, generator=g)
    u = torch.linalg.qr(torch.randn(64, 16, generator=g))[0]
    with torch.no_grad():
        w = torch.einsum("ob,bayx,ca->ocyx", u, core, u)
        model[0].weight.copy_(w + 0.01 * torch.randn(w.shape, generator=g))
    log = _run(model, Decompose(method="tucker", round_to=1, objective="size", runs=5))
    (row,) = log.details["layers"]
    assert row["rank"] == [16, 16] and row["energy"] > 0.99


@pytest.mark.parametrize(("config", "msg"), [
    (Decompose(method="tucker", rank=60), "tucker rank \\[60, 60\\] of layer `0` gives 40080 parameters, not fewer than the conv's 36864"),
    (Decompose(method="cp", rank=500), "cp rank 500 of layer `0`"),
    (Decompose(method="tucker", ratio=0.25, per_layer={"0": {"ratio": 1.0}}), "layer `0`"),
])
def test_ranks_above_break_even_are_clear_errors_naming_the_layer(config, msg):
    with pytest.raises(BadInputError, match=msg):
        _run(_net(), config)


def test_vbmf_rank_above_break_even_is_skipped_not_an_error():
    ranks, why = decompose_ranks("c", (8, 8, 3, 3), "rank", "vbmf", "tucker", 1, vbmf=(8, 8))
    assert ranks is None and "not fewer than" in why


@pytest.mark.parametrize(("kwargs", "msg"), [
    ({"method": "svd"}, "`method` of `Decompose` must be one of"),
    ({"rank": "auto"}, "`rank` of `Decompose` must be 'vbmf' or an int"),
    ({"rank": 0}, "`rank` of `Decompose` must be an int >= 1"),
    ({"rank": 8, "ratio": 0.5}, "exactly one of them"),
    ({"ratio": 2.0}, "`ratio` of `Decompose` must be a fraction"),
    ({"n_iter": 0}, "`n_iter` of `Decompose`"),
    ({"per_layer": {"a": {"energy": 0.9}}}, "exactly one of \\['rank', 'ratio'\\]"),
])
def test_bad_config_is_a_clear_error(kwargs, msg):
    with pytest.raises(BadInputError, match=msg):
        Decompose(**kwargs)


def test_recipe_yaml_with_vbmf_default():
    r = mp.Recipe.from_yaml("- decompose: {method: cp, per_layer: {'layer3.*': {rank: vbmf}}}\n")
    c = r.steps[0].config
    assert c.rank == "vbmf" and c.setting_for("layer3.0.conv1") == ("rank", "vbmf") and c.iterations == 25
