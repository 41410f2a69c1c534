"""Shared fixtures for the sharing tests: the digits task and a briefly trained LeNet-300-100 on it."""

from __future__ import annotations

import pytest
import torch

from modelpress.tasks import get
from modelpress.tasks.models import build
from modelpress.tasks.train import train


@pytest.fixture(scope="session")
def digits():
    return get("digits")


@pytest.fixture(scope="session")
def trained_mlp(digits):
    """LeNet-300-100 on 8×8 digits after 3 epochs (≈ 95% test accuracy); copy before changing it."""
    torch.manual_seed(0)
    model = build("lenet-300-100", input_shape=(1, 8, 8))
    train(model, digits.train, digits.loss, epochs=3, lr=2e-3, batch_size=64, progress=False)
    return model.eval()
