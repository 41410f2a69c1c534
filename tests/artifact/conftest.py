"""Shared fixtures for the artifact tests."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn


def _assert_same(a: nn.Module, b: nn.Module) -> None:
    """Same state-dict keys, dtypes, shapes and bits (compared as integers, so -0.0 and NaN count)."""
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert sa[k].dtype == sb[k].dtype and sa[k].shape == sb[k].shape, k
        width = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[sa[k].element_size()]
        assert torch.equal(sa[k].contiguous().view(width), sb[k].contiguous().view(width)), k


@pytest.fixture
def assert_same() -> Callable[[nn.Module, nn.Module], None]:
    """Assert two models' states are bit-identical."""
    return _assert_same


@pytest.fixture
def manifest_of() -> Callable[[Path], dict[str, Any]]:
    """Read an artifact folder's manifest.json as a dict."""
    return lambda folder: json.loads((Path(folder) / "manifest.json").read_text())
