"""Clustered and hashed modules: codebook gradients, exact zeros, bit-exact pack / unpack, golden bytes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from modelpress.errors import BadInputError
from modelpress.sharing.hashing import splitmix64
from modelpress.sharing.modules import (
    ClusteredConv2d,
    ClusteredLinear,
    HashedConv2d,
    HashedLinear,
    cluster_weight,
)

ALL = (ClusteredLinear, ClusteredConv2d, HashedLinear, HashedConv2d)


@pytest.mark.parametrize("cls", ALL)
def test_pack_unpack_is_bit_exact_and_dense_forms_agree(cls):
    m, (x,) = cls.example()
    tensors, meta = m.pack()
    back = cls.unpack(tensors, meta)
    assert torch.equal(back.weight, m.weight)
    assert torch.equal(back(x), m(x))
    dense = m.to_dense()
    assert type(dense) in (nn.Linear, nn.Conv2d) and torch.equal(dense(x), m(x))
    assert torch.equal(m.export_module().weight, m.weight)


def test_golden_bytes_of_a_small_codebook():
    # codes 0..3 with code 0 the exact zero: two bits each, LSB first (0,1,2,3 -> 0b11100100 = 0xe4).
    m = ClusteredLinear(torch.tensor([-0.5, 0.25, 1.0]), torch.tensor([[0, 1, 2, 3], [3, 0, 0, 1]]),
                        {"kind": "linear"}, torch.tensor([0.5, -1.0]), codes=4, zero_code=True)
    tensors, meta = m.pack()
    assert {k: (str(v.dtype), v.numpy().tobytes().hex()) for k, v in tensors.items()} == {
        "codebook": ("torch.float32", "000000bf0000803e0000803f"),
        "indices": ("torch.uint8", "e443"),
        "bias": ("torch.float32", "0000003f000080bf"),
    }
    assert meta["idx"] == "joint nbit:2"  # one stream, bit-packed, 2 bytes
    assert m.weight.tolist() == [[0.0, -0.5, 0.25, 1.0], [1.0, 0.0, 0.0, -0.5]]


def test_golden_bytes_of_a_range_coded_stream():
    # 400 skewed codes (drawn with the golden-tested hash, p = 40/64, 16/64, 6/64, 2/64): range coding
    # (constriction 0.5) wins; the stream is the count width, the counts (uint16), the payload.
    u = torch.from_numpy((splitmix64(np.arange(400, dtype=np.uint64)) % np.uint64(64)).astype(np.int64))
    idx = torch.bucketize(u, torch.tensor([40, 56, 62]), right=True).reshape(20, 20)
    m = ClusteredLinear(torch.tensor([0.1, 0.2, 0.3, 0.4]), idx, {"kind": "linear"}, codes=4, zero_code=False)
    tensors, meta = m.pack()
    assert meta["idx"] == "joint range:81"
    assert tensors["indices"].numpy().tobytes().hex() == GOLDEN_RANGE
    assert torch.equal(ClusteredLinear.unpack(tensors, meta).indices, idx)


GOLDEN_RANGE = ("02fc006a001c000e00f786ffb2c13db76a470ab40026e17dbfd7e32f6abb5e480ff18178d24bf12b7aad4b158f42f75"
                "255d9d6a2310b59fa73337bd4723573d5440e1814d42b82fed92c51d0841239049f")


def test_codebook_gradient_is_the_sum_of_its_weights_gradients():
    torch.manual_seed(0)
    base = nn.Linear(20, 7)
    with torch.no_grad():
        base.weight[base.weight.abs() < 0.05] = 0.0
    m = ClusteredLinear.from_float(base, 8)
    x = torch.randn(16, 20)
    # reference: the gradient of the loss with respect to a free dense weight equal to m.weight
    w = m.weight.detach().clone().requires_grad_(True)
    torch.nn.functional.linear(x, w, m.bias.detach()).pow(2).sum().backward()
    m(x).pow(2).sum().backward()
    expected = torch.zeros(8).index_add_(0, m.indices.reshape(-1), w.grad.reshape(-1))
    assert m.zero_code
    assert torch.allclose(m.codebook.grad, expected[1:], rtol=1e-5, atol=1e-6)


def test_pruned_zeros_stay_exactly_zero_through_training():
    torch.manual_seed(0)
    base = nn.Linear(30, 10)
    with torch.no_grad():
        base.weight[torch.rand(10, 30) < 0.8] = 0.0
    zeros = base.weight == 0
    m = ClusteredLinear.from_float(base, 16)
    opt = torch.optim.Adam(m.parameters(), lr=0.1)
    for _ in range(20):
        opt.zero_grad()
        m(torch.randn(8, 30)).sum().backward()
        opt.step()
    assert torch.equal(m.weight == 0, zeros)
    assert bool((m.weight[zeros] == 0).all()) and not bool(torch.signbit(m.weight[zeros]).any())


def test_cluster_weight_without_zeros_uses_every_code():
    w = torch.linspace(-1, 1, 64).reshape(8, 8)
    codebook, indices, zero = cluster_weight(w, 8)
    assert not zero and codebook.numel() == 8 and set(indices.unique().tolist()) == set(range(8))


@pytest.mark.parametrize("dtype", ["float16", "int8"])
def test_rounded_codebook_is_stored_in_its_dtype_and_decodes_exactly(dtype):
    m, _ = ClusteredConv2d.example()
    m.round_codebook(dtype)
    tensors, meta = m.pack()
    assert meta["cb"] == dtype and str(tensors["codebook"].dtype) == f"torch.{dtype}"
    back = ClusteredConv2d.unpack(tensors, meta)
    assert torch.equal(back.weight, m.weight)


def test_codebook_moved_off_its_grid_is_stored_in_float32():
    m, _ = ClusteredLinear.example()
    m.round_codebook("int8")
    with torch.no_grad():
        m.codebook.add_(1e-3)  # e.g. fine-tuned after rounding
    tensors, meta = m.pack()
    assert meta["cb"] == "float32"
    assert torch.equal(ClusteredLinear.unpack(tensors, meta).weight, m.weight)


def test_hashed_buckets_receive_signed_summed_gradients():
    m, _ = HashedLinear.example()
    w = m.weight.detach().clone().requires_grad_(True)
    x = torch.randn(4, 8)
    torch.nn.functional.linear(x, w, m.bias.detach()).sum().backward()
    m(x).sum().backward()
    expected = torch.zeros(m.buckets.numel()).index_add_(0, m.bucket, m.sign * w.grad.reshape(-1))
    assert torch.allclose(m.buckets.grad, expected, atol=1e-6)


def test_hashed_init_is_the_least_squares_fit():
    torch.manual_seed(0)
    base = nn.Linear(40, 10)
    m = HashedLinear.from_float(base, 0.25, seed=3)
    err = (m.weight - base.weight).pow(2).sum()
    # perturbing any bucket can only increase the squared error of the virtual weights
    with torch.no_grad():
        m.buckets[5] += 0.01
    assert (m.weight - base.weight).pow(2).sum() > err
    assert m.buckets.numel() == 100


def test_bad_code_count_is_a_clear_error():
    with pytest.raises(BadInputError, match="`codes` of `ClusteredLinear`"):
        ClusteredLinear(torch.zeros(1), torch.zeros(2, 2), {"kind": "linear"}, codes=300, zero_code=False)
