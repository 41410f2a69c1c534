"""The packed formats: golden bytes, round-trip properties, the lossless choice, zstd."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from modelpress.artifact import packing as P
from modelpress.errors import BadInputError

# ---- golden bytes: these pin the on-disk format; changing them breaks old artifacts ------------------


def test_bitmask_golden_bytes():
    x = torch.tensor([0.0, 1.5, 0.0, -0.0, 0.0, 0.0, 0.0, 0.0, 2.0], dtype=torch.float32)
    mask, values = P.bitmask_pack(x)
    # bits 1 and 3 (-0.0 has its sign bit set, so it is stored) of byte 0; bit 0 of byte 1
    assert mask.dtype == torch.uint8 and bytes(mask.numpy()) == b"\x0a\x01"
    assert values.dtype == torch.float32
    assert bytes(values.numpy()) == struct.pack("<3f", 1.5, -0.0, 2.0) == bytes.fromhex("0000c03f000000800000" "0040")
    back = P.bitmask_unpack(mask, values, (3, 3))
    assert back.shape == (3, 3)
    assert torch.equal(back.reshape(-1).view(torch.int32), x.view(torch.int32))


def test_int4_golden_bytes_odd_length():
    packed = P.int4_pack(torch.tensor([1, -1, 7, -8, 3]))
    # nibbles 0x1, 0xF | 0x7, 0x8 | 0x3, pad 0 — low nibble first
    assert bytes(packed.numpy()) == b"\xf1\x87\x03"
    assert P.int4_unpack(packed, 5).tolist() == [1, -1, 7, -8, 3]


def test_nbit_golden_bytes():
    # 5=101, 2=010, 7=111 written LSB first: 1,0,1, 0,1,0, 1,1,1 → 0b11010101, 0b1
    assert bytes(P.nbit_pack(torch.tensor([5, 2, 7]), 3).numpy()) == b"\xd5\x01"
    assert bytes(P.nbit_pack(torch.tensor([1, 0, 1, 1, 0, 0, 0, 0, 1]), 1).numpy()) == b"\x0d\x01"
    assert bytes(P.nbit_pack(torch.tensor([255, 0, 128], dtype=torch.uint8), 8).numpy()) == b"\xff\x00\x80"


# ---- round-trip properties ------------------------------------------------------------------------------

_float_bits = arrays(np.int32, st.integers(0, 300),
                     elements=st.one_of(st.just(0), st.just(-(2**31)), st.integers(-(2**31), 2**31 - 1)))


@settings(max_examples=60, deadline=None)
@given(_float_bits)
def test_bitmask_roundtrip_is_bit_exact_for_any_float32_bits(bits):
    # every float32 bit pattern: zeros, -0.0, NaNs with payloads, infinities, denormals
    x = torch.from_numpy(bits).view(torch.float32)
    mask, values = P.bitmask_pack(x)
    assert mask.numel() == (x.numel() + 7) // 8
    assert values.numel() == int((bits != 0).sum())
    back = P.bitmask_unpack(mask, values, tuple(x.shape))
    assert torch.equal(back.view(torch.int32), x.view(torch.int32))


@settings(max_examples=30, deadline=None)
@given(st.sampled_from([torch.float16, torch.bfloat16, torch.float64, torch.int8, torch.int64, torch.uint8]),
       st.lists(st.integers(0, 6), min_size=0, max_size=4), st.integers(0, 2**31))
def test_bitmask_roundtrip_other_dtypes_and_shapes(dtype, shape, seed):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=g) * 50).to(dtype)
    x[torch.rand(shape, generator=g) < 0.7] = 0
    mask, values = P.bitmask_pack(x)
    back = P.bitmask_unpack(mask, values, tuple(x.shape))
    assert back.dtype == dtype and back.shape == x.shape
    width = {1: torch.uint8, 2: torch.int16, 8: torch.int64}[x.element_size()]
    assert torch.equal(back.view(width), x.view(width))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-8, 7), min_size=0, max_size=200))
def test_int4_roundtrip_any_length(values):
    x = torch.tensor(values, dtype=torch.int8)
    packed = P.int4_pack(x)
    assert packed.dtype == torch.uint8 and packed.numel() == (len(values) + 1) // 2
    assert P.int4_unpack(packed, len(values)).tolist() == values


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 8).flatmap(lambda b: st.tuples(st.just(b), st.lists(st.integers(0, 2**b - 1), max_size=300))))
def test_nbit_roundtrip_and_size(case):
    bits, values = case
    packed = P.nbit_pack(torch.tensor(values, dtype=torch.int64), bits)
    assert packed.numel() == (len(values) * bits + 7) // 8
    assert P.nbit_unpack(packed, bits, len(values)).tolist() == values


def test_int4_equals_nbit_of_low_nibble():
    x = torch.arange(-8, 8)
    assert torch.equal(P.int4_pack(x), P.nbit_pack(x & 0xF, 4))


@pytest.mark.parametrize("call", [
    lambda: P.nbit_pack(torch.tensor([4]), 2),                 # out of range
    lambda: P.nbit_pack(torch.tensor([-1]), 8),                # negative
    lambda: P.nbit_pack(torch.tensor([0]), 0),                 # bits 0
    lambda: P.nbit_pack(torch.tensor([0]), 9),                 # bits 9
    lambda: P.nbit_pack(torch.tensor([0.5]), 4),               # float
    lambda: P.int4_pack(torch.tensor([8])),                    # int4 range
    lambda: P.nbit_unpack(torch.zeros(1, dtype=torch.uint8), 3, 5),          # too short
    lambda: P.bitmask_unpack(torch.tensor([0b11], dtype=torch.uint8), torch.ones(1), (4,)),  # count
    lambda: P.bitmask_unpack(torch.zeros(2, dtype=torch.uint8), torch.ones(0), (4,)),        # mask size
])
def test_bad_inputs_raise(call):
    with pytest.raises(BadInputError):
        call()


# ---- the automatic lossless choice ---------------------------------------------------------------------


def test_encode_lossless_picks_bitmask_only_when_smaller():
    g = torch.Generator().manual_seed(0)
    sparse = torch.randn(300, 784, generator=g)
    sparse[torch.rand(300, 784, generator=g) < 0.9] = 0
    stored, entry = P.encode_lossless("fc1.weight", sparse)
    assert entry["encoding"] == "bitmask" and set(stored) == {"fc1.weight#mask", "fc1.weight#values"}
    nbytes = sum(t.numel() * t.element_size() for t in stored.values())
    nnz = int((sparse != 0).sum())
    assert nbytes == P.bitmask_nbytes(sparse.numel(), nnz, 4) == 29400 + nnz * 4
    assert torch.equal(P.decode_lossless("fc1.weight", entry, stored), sparse)

    dense = torch.randn(300, 784, generator=g)
    stored, entry = P.encode_lossless("w", dense)
    assert entry == {"encoding": "dense", "shape": [300, 784], "dtype": "float32"} and set(stored) == {"w"}
    # a tiny all-zero tensor: the extra header entry would cost more than it saves
    assert P.encode_lossless("b", torch.zeros(10))[1]["encoding"] == "dense"
    # break-even: 50% zeros of fp32 saves 50% - 1/32, so bitmask wins on a big tensor
    half = torch.ones(10_000)
    half[::2] = 0
    assert P.encode_lossless("h", half)[1]["encoding"] == "bitmask"


def test_decode_lossless_reports_missing_and_mismatched():
    stored, entry = P.encode_lossless("w", torch.ones(4))
    with pytest.raises(BadInputError, match="missing"):
        P.decode_lossless("v", entry, stored)
    with pytest.raises(BadInputError, match="manifest"):
        P.decode_lossless("w", {**entry, "shape": [2]}, stored)
    with pytest.raises(BadInputError, match="encoding"):
        P.decode_lossless("w", {**entry, "encoding": "lz"}, stored)


# ---- zstd ------------------------------------------------------------------------------------------------


def test_zstd_only_when_it_pays():
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(100_000, generator=g).numpy().tobytes()
    assert P.maybe_zstd(noise) is None  # fp32 noise: < 10 % saving
    # 16 distinct float values (weight sharing): ~4 bits of entropy per 32-bit value
    shared = torch.linspace(-1, 1, 16)[torch.randint(0, 16, (100_000,), generator=g)].numpy().tobytes()
    packed = P.maybe_zstd(shared)
    assert packed is not None and len(packed) < 0.25 * len(shared)
    assert P.zstd_decompress(packed) == shared
    with pytest.raises(BadInputError):
        P.zstd_decompress(packed[:-10])


@settings(max_examples=40, deadline=None)
@given(st.sampled_from([torch.float32, torch.float16, torch.int8, torch.int32]),
       st.integers(0, 2000), st.floats(0.0, 1.0), st.integers(0, 2**31))
def test_encode_lossless_roundtrip_and_never_bigger(dtype, n, zero_frac, seed):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(n, generator=g) * 100).to(dtype)
    x[torch.rand(n, generator=g) < zero_frac] = 0
    stored, entry = P.encode_lossless("t", x)
    back = P.decode_lossless("t", entry, stored)
    assert back.dtype == x.dtype and torch.equal(back, x)
    stored_bytes = sum(t.numel() * t.element_size() for t in stored.values())
    assert stored_bytes <= n * x.element_size()
    if entry["encoding"] == "bitmask":  # chosen only when it pays for its extra header entry
        assert stored_bytes + P.ENTRY_OVERHEAD_BYTES < n * x.element_size()
