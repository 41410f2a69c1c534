"""Quantized modules: packing round-trips bit-exactly and really shrinks the stored bytes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from modelpress.quantization.modules import (
    HalfLinear,
    QuantConv2d,
    QuantEmbedding,
    QuantLinear,
    WeightSpec,
)


def _bytes(tensors: dict[str, torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors.values())


@pytest.mark.parametrize("bits,gran,sym", [(8, "channel", True), (8, "tensor", False), (4, "group", True),
                                           (4, "group", False), (4, "channel", False)])
def test_linear_pack_unpack_is_bit_exact(bits, gran, sym):
    torch.manual_seed(0)
    lin = nn.Linear(128, 24)
    q = QuantLinear.from_float(lin, WeightSpec(bits, gran, 32, sym), act="dynamic")
    tensors, meta = q.pack()
    r = QuantLinear.unpack({k: v.clone() for k, v in tensors.items()}, meta)
    assert torch.equal(r.qweight, q.qweight) and torch.equal(r.scale, q.scale)
    assert torch.equal(r.zero_point, q.zero_point)
    x = torch.randn(5, 128)
    assert torch.equal(r(x), q(x))
    lo, hi = (-8, 7) if bits == 4 else (-128, 127)
    assert lo <= int(q.qweight.min()) and int(q.qweight.max()) <= hi


def test_int4_codes_are_stored_two_per_byte_and_sizes_drop():
    torch.manual_seed(0)
    lin = nn.Linear(256, 64, bias=False)
    fp32 = 256 * 64 * 4
    t8, _ = QuantLinear.from_float(lin, WeightSpec(8, "channel")).pack()
    t4, _ = QuantLinear.from_float(lin, WeightSpec(4, "group", 32)).pack()
    assert t4["qweight"].dtype == torch.uint8 and t4["qweight"].numel() == 256 * 64 // 2
    assert t4["scale"].dtype == torch.float16  # scales rounded to fp16 before coding: stored exactly
    assert _bytes(t8) / fp32 <= 0.26
    assert _bytes(t4) / fp32 <= 0.145


def test_conv_and_embedding_round_trip_and_to_dense():
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 16, 3, stride=2, padding=1)
    q = QuantConv2d.from_float(conv, WeightSpec(8, "channel"), act="static", act_scale=0.02, act_zp=10)
    r = QuantConv2d.unpack(*q.pack())
    x = torch.randn(2, 8, 9, 9)
    assert torch.equal(r(x), q(x))
    dense = q.to_dense()
    assert isinstance(dense, nn.Conv2d) and torch.equal(dense.weight, q.weight)
    # the conv error is that of its weight codes: close to the float conv
    assert torch.allclose(dense(x), conv(x), atol=0.05)
    emb = nn.Embedding(100, 64, padding_idx=0)
    qe = QuantEmbedding.from_float(emb, WeightSpec(4, "group", 32))
    re = QuantEmbedding.unpack(*qe.pack())
    idx = torch.tensor([[0, 5, 99]])
    assert torch.equal(re(idx), qe(idx))


def test_static_activation_fake_quant_and_export_skip():
    lin = nn.Linear(4, 2)
    q = QuantLinear.from_float(lin, WeightSpec(8, "channel"), act="static", act_scale=0.5, act_zp=0)
    x = torch.tensor([[0.2, 0.7, -1.0, 300.0]])  # → 0, 0.5 (half-to-even: 1.4 → 1), 0 (clipped), 127.5
    expected = torch.nn.functional.linear(torch.tensor([[0.0, 0.5, 0.0, 127.5]]), q.weight, q.bias)
    assert torch.allclose(q(x), expected)


def test_half_linear_stores_16_bits_computes_fp32():
    lin = nn.Linear(32, 8)
    h = HalfLinear.from_float(lin, torch.bfloat16)
    t, meta = h.pack()
    assert t["weight16"].dtype == torch.bfloat16
    r = HalfLinear.unpack(t, meta)
    x = torch.randn(3, 32)
    assert r(x).dtype == torch.float32 and torch.equal(r(x), h(x))
    assert torch.allclose(h(x), lin(x), atol=0.05)
