"""Shared fixtures: the digits task and its cached trained LeNet-300-100 (about 0.96 accuracy)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def digits_task():
    from modelpress import tasks

    return tasks.get("digits")


@pytest.fixture(scope="session")
def digits_model(digits_task):
    return digits_task.model().eval()
