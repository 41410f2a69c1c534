"""Layers a user's model may hold that are not plain torch layers: a TensorFlow-port conv that pads in its
forward, and a custom layer with its own parameter that no step handles."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SameConv2d(nn.Conv2d):
    """A TensorFlow-port conv: pads "SAME" (asymmetric for even kernels) in forward, then convolves."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kh, kw = self.kernel_size
        return super().forward(F.pad(x, (kw // 2 - 1 + kw % 2, kw // 2, kh // 2 - 1 + kh % 2, kh // 2)))


class MatmulLayer(nn.Module):
    """A custom layer with its own ``(n, n)`` parameter and a matmul: no step handles it."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.eye(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.w
