"""Entropy coding of index streams: lossless, within 2% of the empirical entropy, decoded exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modelpress.errors import BadInputError
from modelpress.sharing.coding import (
    decode_indices,
    decode_mask,
    decode_symbols,
    encode_indices,
    encode_mask,
    encode_symbols,
    entropy_bytes,
    parse_spec,
)


def _skewed(n: int, alphabet: int, seed: int = 0, zero: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(alphabet - 1) * 0.7) * (1 - zero)
    return rng.choice(alphabet, size=n, p=np.r_[zero, p]).astype(np.int64)


@pytest.mark.parametrize(("n", "alphabet"), [(30_000, 32), (300_000, 32), (25_000, 256), (5_000, 4)])
def test_range_coded_stream_is_within_2_percent_of_its_entropy(n, alphabet):
    x = _skewed(n, alphabet)
    payload, meta = encode_symbols(x, alphabet)
    assert meta["m"] in ("range", "zstd")  # zstd only where it beats the range coder and its count table
    table = 1 + 2 * alphabet  # the stored symbol counts (uint16)
    assert len(payload) - table <= 1.02 * entropy_bytes(x, alphabet)
    assert np.array_equal(decode_symbols(payload, meta), x)


def test_uniform_codes_fall_back_to_bit_packing():
    x = np.random.default_rng(2).integers(0, 32, 4096)  # ~5 bits each: a count table only adds bytes
    payload, meta = encode_symbols(x, 32)
    assert meta["m"] == "nbit" and len(payload) == 4096 * 5 // 8
    assert np.array_equal(decode_symbols(payload, meta), x)


def test_runs_go_to_zstd():
    x = np.repeat(np.arange(8), 4096)  # long runs: LZ matches beat any zero-order model
    payload, meta = encode_symbols(x, 8)
    assert meta["m"] == "zstd" and len(payload) < 0.05 * entropy_bytes(x)
    assert np.array_equal(decode_symbols(payload, meta), x)


def test_adaptive_mask_exploits_dead_columns_and_stays_near_the_model_entropy():
    rng = np.random.default_rng(1)
    # 300 × 784 like fc1 of LeNet-300-100: a third of the inputs dead, the rest 10% dense.
    alive = rng.random(784) < 0.66
    mask = (rng.random((300, 784)) < 0.1) & alive
    payload, meta = encode_mask(mask)
    assert meta["m"] == "adaptive"
    zero_order = entropy_bytes(mask.reshape(-1).astype(np.int64))
    per_column = sum(entropy_bytes(mask[:, j].astype(np.int64)) for j in range(784))
    # here the per-column entropy is 11% below the zero-order one, which no zero-order coder can beat
    assert len(payload) < 0.95 * zero_order
    assert len(payload) < 1.05 * per_column + 2 * 784  # the learning cost: ~ log2(300) bits per live column
    assert np.array_equal(decode_mask(payload, meta), mask)


@pytest.mark.parametrize("entropy", [True, False])
def test_pruned_codes_round_trip_in_either_layout(entropy):
    codes = torch.from_numpy(_skewed(100 * 300, 32, zero=0.9).reshape(100, 300))
    blob, spec = encode_indices(codes, 32, zero_code=True, entropy=entropy)
    assert torch.equal(decode_indices(blob, spec, (100, 300), 32), codes)
    if not entropy:
        assert all(s["m"] == "nbit" for s in parse_spec(spec, (100, 300), 32)["s"])


def test_split_layout_beats_joint_fixed_width_on_sparse_codes():
    codes = torch.from_numpy(_skewed(100 * 300, 32, zero=0.9).reshape(100, 300))
    blob, spec = encode_indices(codes, 32, zero_code=True, entropy=False)
    assert spec.startswith("split nbit:3750:") and len(blob) < 30_000 * 5 / 8 * 0.5


def test_damaged_blob_is_a_clear_error():
    codes = torch.from_numpy(_skewed(1000, 16).reshape(10, 100))
    blob, spec = encode_indices(codes, 16, zero_code=False)
    with pytest.raises(BadInputError, match="damaged"):
        decode_indices(blob[:-4], spec, (10, 100), 16)
    with pytest.raises(BadInputError, match="damaged"):
        decode_indices(blob, "joint", (10, 100), 16)


def test_out_of_range_symbols_are_refused():
    with pytest.raises(BadInputError, match="symbols in"):
        encode_symbols(np.array([0, 5]), 4)


def test_a_300k_index_layer_round_trips_exactly():
    # Its decoding time is a benchmark row (`bench_sharing decode`, 50 ms bar), not a timed unit test.
    codes = torch.from_numpy(_skewed(300 * 1000, 32, zero=0.9).reshape(300, 1000))
    blob, spec = encode_indices(codes, 32, zero_code=True)
    out = decode_indices(blob, spec, (300, 1000), 32)
    assert torch.equal(out, codes)


def _receptive_fields(rows: int, side: int, seed: int = 0) -> np.ndarray:
    """Masks shaped like pruned fc1 rows: each row keeps a random blob of a ``side`` × ``side`` picture,
    and the picture's border is dead in every row."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side]
    out = np.zeros((rows, side * side), dtype=bool)
    for r in range(rows):
        cy, cx = rng.uniform(side * 0.3, side * 0.7, 2)
        blob = (yy - cy) ** 2 + (xx - cx) ** 2 < rng.uniform(4, 25)
        out[r] = (blob & (rng.random((side, side)) < 0.6)).reshape(-1)
    border = (yy < 3) | (yy >= side - 3) | (xx < 3) | (xx >= side - 3)
    out[:, border.reshape(-1)] = False
    return out


def test_context_model_finds_the_image_width_and_beats_the_other_coders():
    mask = _receptive_fields(120, 28)
    payload, meta = encode_mask(mask)
    assert meta["m"] == "context" and meta["t"] == 28
    bitmap = (mask.size + 7) // 8
    assert len(payload) < 0.8 * entropy_bytes(mask.reshape(-1).astype(np.int64)) < bitmap
    assert np.array_equal(decode_mask(payload, meta), mask)


def test_context_model_round_trips_odd_shapes():
    rng = np.random.default_rng(4)
    for shape in [(1, 5), (7, 3), (33, 50)]:
        mask = rng.random(shape) < 0.3
        from modelpress.sharing.context import context_decode, context_encode

        payload, width = context_encode(mask)
        words = np.frombuffer(payload, dtype="<u4").astype(np.uint32)
        back = context_decode(words, *shape, width, float(mask.mean()))
        assert np.array_equal(back, mask), shape


def test_codes_of_smooth_receptive_fields_use_the_neighbour_model_and_round_trip():
    mask = _receptive_fields(80, 28, seed=2)
    rng = np.random.default_rng(3)
    # each neuron's weights: a smooth ramp over the picture (plus noise), clustered into 31 codes
    ramp = np.linspace(0, 1, 28 * 28)[None, :] * rng.uniform(-1, 1, (80, 1)) + 0.05 * rng.standard_normal((80, 784))
    codes2d = np.where(mask, 1 + np.clip(((ramp + 1) / 2 * 31).astype(np.int64), 0, 30), 0)
    codes = torch.from_numpy(codes2d)
    blob, spec = encode_indices(codes, 32, zero_code=True)
    assert spec.startswith("split context:") and spec.split(" ")[2].startswith("context:")
    plain = entropy_bytes(codes2d[mask] - 1, 31)
    assert parse_spec(spec, (80, 784), 32)["s"][1]["b"] < 0.95 * plain  # below any zero-order coder
    assert torch.equal(decode_indices(blob, spec, (80, 784), 32), codes)
