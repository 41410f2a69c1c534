"""MACs against planted counts (computed by hand from the layer shapes)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from modelpress.errors import BadInputError
from modelpress.measure import count_macs


def test_lenet_300_100_is_266200(lenet):
    # 784·300 + 300·100 + 100·10 = 266,200 (Han et al. count the same).
    assert count_macs(lenet(), (torch.randn(1, 1, 28, 28),)) == 266_200


def test_conv_20_5x5_on_28x28():
    # 20 output channels × 24×24 positions × 25 taps × 1 input channel.
    assert count_macs(nn.Conv2d(1, 20, 5), (torch.randn(1, 1, 28, 28),)) == 20 * 24 * 24 * 25 == 288_000


def test_linear_without_bias():
    assert count_macs(nn.Linear(784, 300, bias=False), (torch.randn(1, 784),)) == 235_200


def test_per_example_whatever_the_batch(lenet):
    assert count_macs(lenet(), (torch.randn(7, 1, 28, 28),)) == 266_200


def test_parametrized_model_counts_like_dense_and_is_left_alone(lenet, multiply_mask):
    model = lenet().train()
    layer = model.fc1
    multiply_mask(layer, torch.ones_like(layer.weight))
    assert count_macs(model, (torch.randn(1, 1, 28, 28),)) == 266_200
    assert parametrize.is_parametrized(layer, "weight")  # the caller's model keeps its mask
    assert model.training and layer.training  # and its mode


def test_two_inputs():
    class Two(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(10, 4, bias=False)
            self.b = nn.Linear(6, 4, bias=False)

        def forward(self, x, y):
            return self.a(x) + self.b(y)

    assert count_macs(Two(), (torch.randn(3, 10), torch.randn(3, 6))) == 40 + 24


@pytest.mark.parametrize("bad", [torch.randn(()), (), "x", (torch.randn(2, 3), torch.randn(3, 3))])
def test_bad_inputs_are_refused(bad):
    with pytest.raises(BadInputError):
        count_macs(nn.Linear(3, 3), bad)
