"""Fixtures for the whole suite."""

import pytest
import torch
from hypothesis import settings
from torch import Tensor, nn
from torch.nn.utils import parametrize

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
