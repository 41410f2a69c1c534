"""Factored modules: the swap protocol (pack / unpack, to_dense, export_module) and conv geometry."""

import pytest
import torch
from torch import nn

from modelpress.lowrank.factor import factor, layer_matrix
from modelpress.lowrank.modules import ChannelFactoredConv2d, FactoredLinear, SpatialFactoredConv2d
from tests.factored_checks import check_factored_swap

CLASSES = [FactoredLinear, ChannelFactoredConv2d, SpatialFactoredConv2d]


@pytest.mark.parametrize("cls", CLASSES)
def test_example_follows_the_swap_protocol(cls):
    m, (x,) = cls.example()
    m.eval()
    exported, dense = check_factored_swap(m, x)
    assert type(dense) in (nn.Linear, nn.Conv2d)
    assert sum(p.numel() for p in exported.parameters()) < sum(p.numel() for p in dense.parameters())


@pytest.mark.parametrize(("mode", "kw"), [
    ("spatial", {"stride": 2, "padding": 1}),
    ("spatial", {"stride": (1, 2), "padding": (2, 1), "dilation": (2, 1)}),
    ("channel", {"stride": 2, "padding": 1, "dilation": 2}),
    ("spatial", {"padding": "same"}),
    ("channel", {"padding": "valid", "bias": False}),
])
def test_full_rank_factors_reproduce_the_conv_with_its_geometry(mode, kw):
    torch.manual_seed(0)
    conv = nn.Conv2d(5, 7, 3, **kw).eval()
    plan = layer_matrix(conv, mode)
    new, energy = factor(conv, plan, min(plan.matrix.shape))
    x = torch.randn(2, 5, 13, 12)
    assert energy == pytest.approx(1.0)
    assert torch.allclose(new(x), conv(x), atol=1e-5)
    assert torch.allclose(new.to_dense().weight, conv.weight, atol=1e-6)
    assert (new.to_dense().bias is None) == (conv.bias is None)


def test_one_by_one_conv_uses_the_channel_form():
    plan = layer_matrix(nn.Conv2d(8, 16, 1), "spatial")
    assert plan.form == "channel" and tuple(plan.matrix.shape) == (16, 8)


@pytest.mark.parametrize("conv", [nn.Conv2d(8, 8, 3, groups=2), nn.Conv2d(8, 8, 3, groups=8),
                                  nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"),
                                  nn.Conv2d(4, 4, 2, padding="same")])
def test_unfactorable_convs_are_refused(conv):
    with pytest.raises(ValueError, match="grouped conv"):
        layer_matrix(conv, "spatial")
