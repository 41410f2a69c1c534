"""Fixtures for the whole suite."""

import pytest
import torch
from hypothesis import settings
from torch import Tensor, nn
from torch.nn.utils import parametrize

from modelpress.tasks import get
from modelpress.tasks.models import build
from modelpress.tasks.train import train

# The same examples on every run, so that CI passes or fails for a reason, not by the draw.
settings.register_profile("modelpress", derandomize=True)
settings.load_profile("modelpress")


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Tests run single-threaded: the suite shares two cores, and results must not depend on threads."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def digits():
    """scikit-learn's digits task (fast)."""
    return get("digits")


@pytest.fixture(scope="session")
def trained_mlp(digits):
    """LeNet-300-100 on 8×8 digits after 3 epochs (≈ 95% test accuracy); copy before changing it."""
    torch.manual_seed(0)
    model = build("lenet-300-100", input_shape=(1, 8, 8))
    train(model, digits.train, digits.loss, epochs=3, lr=2e-3, batch_size=64, progress=False)
    return model.eval()


class _MultiplyMask(nn.Module):
    """A parametrization ``weight * mask`` as another library would write it (not modelpress's WeightMask)."""

    def __init__(self, mask: Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, w: Tensor) -> Tensor:
        return w * self.mask


@pytest.fixture
def multiply_mask():
    """``multiply_mask(module, mask)`` parametrizes ``module.weight`` as ``weight * mask`` (float mask)."""

    def register(module: nn.Module, mask: Tensor) -> None:
        parametrize.register_parametrization(module, "weight", _MultiplyMask(mask))

    return register
