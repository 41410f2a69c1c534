"""Shared fixtures for the measure tests: tiny models and a small digits model trained once."""

from __future__ import annotations

import pytest
import torch
from torch import nn


def _lenet_300_100() -> nn.Module:
    from modelpress.tasks.models import build

    return build("lenet-300-100", input_shape=(1, 28, 28), num_classes=10)


@pytest.fixture
def lenet():
    """A factory of the built-in LeNet-300-100 (random init, source attached): 784-300-100-10 as
    fc1, fc2, fc3; 266,610 params, 266,200 MACs at 28×28."""
    torch.manual_seed(0)
    return _lenet_300_100


@pytest.fixture(scope="session")
def digits_task():
    from modelpress import tasks

    return tasks.get("digits")


@pytest.fixture(scope="session")
def digits_model(digits_task):
    """A LeNet-300-100 (built-in, 8×8 input) trained 4 epochs on digits: about 0.95 accuracy, ~2 s."""
    from modelpress.tasks.models import build
    from modelpress.tasks.train import train

    torch.manual_seed(0)
    model = build("lenet-300-100", input_shape=(1, 8, 8), num_classes=10)
    train(model, digits_task.train, digits_task.loss, epochs=4, lr=1e-3, seed=0, progress=False)
    return model.eval()
