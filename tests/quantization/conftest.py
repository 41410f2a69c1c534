"""A small trained CNN with BatchNorm on scikit-learn digits, shared by the quantization tests."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from modelpress.tasks import data, metrics
from modelpress.tasks.task import Metric, Task
from modelpress.tasks.train import train


class DigitsNet(nn.Module):
    """conv-BN-ReLU ×2, max-pool, two Linear layers: 8×8 digits → 10 logits."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 16, 3, padding=1)
        self.b1 = nn.BatchNorm2d(16)
        self.c2 = nn.Conv2d(16, 32, 3, padding=1)
        self.b2 = nn.BatchNorm2d(32)
        self.fc1 = nn.Linear(32 * 4 * 4, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.b1(self.c1(x)))
        x = torch.max_pool2d(torch.relu(self.b2(self.c2(x))), 2)
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


@pytest.fixture(scope="session")
def digits_task() -> Task:
    s = data.digits()
    return Task("digits-test", "sklearn digits", s.train, s.calibration, s.test,
                Metric("accuracy", metrics.accuracy), metrics.cross_entropy, lambda name=None: DigitsNet(),
                "digits-net")


@pytest.fixture(scope="session")
def _trained(digits_task: Task) -> DigitsNet:
    torch.manual_seed(0)
    m = DigitsNet()
    train(m, digits_task.train, digits_task.loss, epochs=8, lr=3e-3, progress=False)
    return m.eval()


@pytest.fixture()
def trained(_trained: DigitsNet) -> DigitsNet:
    """A fresh copy of the trained model (steps change models in place)."""
    return copy.deepcopy(_trained)
