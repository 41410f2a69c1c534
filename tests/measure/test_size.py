"""Size on disk and parameter counts, against planted references."""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from modelpress.artifact import folder_bytes, save
from modelpress.artifact.packed import PackedModule
from modelpress.measure.size import artifact_bytes, count_params, nonzero_params, params


def test_size_is_the_bytes_on_disk(tmp_path, lenet):
    model = lenet()
    reported = artifact_bytes(model)
    folder = save(model, tmp_path / "m")
    on_disk = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(folder) for f in fs)
    assert reported == folder_bytes(folder) == on_disk
    # fp32 weights dominate: 266,610 floats, plus a manifest of a few KB at most.
    assert 266_610 * 4 < reported < 266_610 * 4 + 16_384


def test_lenet_params(lenet):
    assert count_params(lenet()) == (266_610, 266_610)


def test_exactly_1000_planted_zeros(lenet):
    model = lenet()
    with torch.no_grad():
        model.fc1.weight.view(-1)[:1000] = 0.0
    assert params(model) == 266_610
    assert nonzero_params(model) == 266_610 - 1000


def test_parametrize_mask_counts_weight_once_with_its_zeros(lenet, multiply_mask):
    model = lenet()
    layer = model.fc2  # 300 → 100: 30,000 weights
    mask = torch.ones_like(layer.weight)
    mask.view(-1)[:12_345] = 0
    multiply_mask(layer, mask)
    # parametrized modules hold `original` + the mask buffer: the count must still be the dense one
    assert count_params(model) == (266_610, 266_610 - 12_345)
    assert parametrize.is_parametrized(layer)  # the caller's model is untouched


class _Sparse(PackedModule):
    """A toy packed linear: stores values and indices of the nonzeros only."""

    def __init__(self, dense: nn.Linear) -> None:
        super().__init__()
        w = dense.weight.detach()
        self.shape = tuple(w.shape)
        idx = w.flatten().nonzero().flatten()
        self.register_buffer("idx", idx)
        self.values = nn.Parameter(w.flatten()[idx].clone())
        self.bias = nn.Parameter(dense.bias.detach().clone())

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.linear(x, self.to_dense().weight, self.bias)

    def to_dense(self) -> nn.Linear:
        out = nn.Linear(self.shape[1], self.shape[0])
        w = torch.zeros(self.shape[0] * self.shape[1])
        w[self.idx] = self.values.detach()
        out.weight = nn.Parameter(w.view(self.shape))
        out.bias = nn.Parameter(self.bias.detach().clone())
        return out

    def pack(self) -> tuple[dict[str, Tensor], dict[str, Any]]:  # not used here
        raise NotImplementedError


def test_packed_module_counts_its_dense_equivalent():
    torch.manual_seed(0)
    dense = nn.Linear(50, 40)
    with torch.no_grad():
        dense.weight.view(-1)[::2] = 0  # 1000 of 2000 weights
    model = nn.Sequential(_Sparse(dense))
    # its own tensors are 1000 values + 1000 indices + 40 biases; it stands for 2000 + 40 elements
    assert count_params(model) == (2040, 1040)


def test_tied_weights_count_once():
    emb = nn.Embedding(100, 8)
    head = nn.Linear(8, 100, bias=False)
    head.weight = emb.weight
    assert params(nn.Sequential(emb, head)) == 800


def test_model_without_source_is_sized_by_its_weights_file():
    model = nn.Sequential(nn.Linear(100, 10))  # built outside modelpress: no artifact possible
    size = artifact_bytes(model)
    assert 1010 * 4 < size < 1010 * 4 + 512  # the weights plus safetensors' small JSON header


class _Factored(PackedModule):
    """A factored linear whose deployable form is its two factors; ``to_dense`` must not be what counts."""

    def __init__(self, n_in: int, rank: int, n_out: int) -> None:
        super().__init__()
        self.first = nn.Linear(n_in, rank, bias=False)
        self.second = nn.Linear(rank, n_out)

    def forward(self, x: Tensor) -> Tensor:
        return self.second(self.first(x))

    def export_module(self) -> nn.Module:
        return nn.Sequential(self.first, self.second)

    def to_dense(self) -> nn.Module:
        raise AssertionError("params, MACs and ONNX export must use export_module(), not to_dense()")


def test_params_macs_and_onnx_see_the_export_form(tmp_path):
    from modelpress.artifact.onnx import export_onnx
    from modelpress.measure.macs import count_macs

    torch.manual_seed(0)
    model = nn.Sequential(_Factored(300, 20, 100), nn.ReLU())
    factors = 300 * 20 + 20 * 100 + 100  # vs 30,100 for the dense 300 → 100 layer
    assert count_params(model) == (factors, factors)
    x = torch.randn(2, 300)
    assert count_macs(model, (x,)) == 300 * 20 + 20 * 100
    assert export_onnx(model, (x,), tmp_path / "m.onnx").stat().st_size > factors * 4
