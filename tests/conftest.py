"""Fixtures for the whole suite."""

import pytest
import torch
from hypothesis import settings

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
