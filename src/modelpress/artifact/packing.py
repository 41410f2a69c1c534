"""Packed tensor encodings: pure functions, no modules, no files.

Formats (all little-endian at the bit level, so that element ``i`` lives in bit ``i % 8`` of byte
``i // 8`` — the Arrow / Parquet bitmap convention):

- **bitmask sparse** — ``mask`` (uint8, ``ceil(n / 8)`` bytes, bit set where the element is stored) plus
  ``values`` (the stored elements in row-major order, original dtype). "Stored" means *bit pattern not
  all zero*, so ``-0.0`` (sign bit set) is kept as a value and the round trip is bit-exact, NaNs included.
- **int4** — two signed 4-bit values (two's complement, in [-8, 7]) per byte, element ``2i`` in the low
  nibble, ``2i + 1`` in the high nibble; an odd length is padded with a zero nibble.
- **n-bit** — unsigned integers in ``[0, 2**bits)`` (``bits`` in 1..8, e.g. codebook indices), written as
  one LSB-first bit stream, ``bits`` bits per element, padded with zero bits to a whole byte. int4 is the
  n-bit stream of ``x & 0xF`` with ``bits = 4``.

The per-tensor lossless choice (:func:`encode_lossless`) stores a tensor bitmask-sparse when that is
smaller than dense; :func:`maybe_zstd` entropy-codes a whole file with zstandard when that pays.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import zstandard
from torch import Tensor

from modelpress.errors import BadInputError, bad_value

__all__ = [
    "ENTRY_OVERHEAD_BYTES",
    "ZSTD_LEVEL",
    "ZSTD_MIN_SAVING",
    "bitmask_nbytes",
    "bitmask_pack",
    "bitmask_unpack",
    "decode_lossless",
    "encode_lossless",
    "int4_pack",
    "int4_unpack",
    "maybe_zstd",
    "nbit_pack",
    "nbit_unpack",
    "zstd_decompress",
]

# Bytes a safetensors header entry costs, roughly ("name": {"dtype", "shape", "data_offsets"}): a second
# tensor for the bitmask form must save more than this, or tiny tensors would grow.
ENTRY_OVERHEAD_BYTES = 80
# zstd level 19 is near the top of zstd's ratio range and still decompresses at hundreds of MB/s; we pay
# the slow compression once, at save time.
ZSTD_LEVEL = 19
# Compressed file only when it saves at least this fraction: dense fp32 weights save only a few percent
# (their mantissas are noise), and a plain .safetensors file is loadable by any tool.
ZSTD_MIN_SAVING = 0.10

_INT_OF_WIDTH = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _bits_view(x: Tensor) -> Tensor:
    """The tensor's raw bits as a same-width integer tensor (1-D), so that -0.0 and NaN count as set."""
    flat = x.detach().contiguous().reshape(-1)
    if flat.dtype == torch.bool:
        return flat.to(torch.uint8)
    if flat.dtype.is_complex:
        raise bad_value("x", "bitmask_pack", "a real or integer tensor", str(flat.dtype))
    return flat.view(_INT_OF_WIDTH[flat.element_size()])


def bitmask_pack(x: Tensor) -> tuple[Tensor, Tensor]:
    """Split ``x`` (any shape, n elements) into ``(mask, values)``.

    ``mask``: uint8, shape ``(ceil(n / 8),)``; bit ``i % 8`` of byte ``i // 8`` is set when element ``i``
    (row-major) has a non-zero bit pattern. ``values``: 1-D, ``x.dtype``, the stored elements in order.
    Lossless: :func:`bitmask_unpack` returns a tensor bit-identical to ``x``.
    """
    flat = x.detach().contiguous().reshape(-1)
    keep = _bits_view(flat) != 0
    mask = np.packbits(keep.numpy(), bitorder="little")
    return torch.from_numpy(mask), flat[keep].clone()


def bitmask_unpack(mask: Tensor, values: Tensor, shape: tuple[int, ...] | list[int]) -> Tensor:
    """Inverse of :func:`bitmask_pack`: a tensor of ``shape`` and ``values.dtype``.

    Raises BadInputError when the mask is too short or its set-bit count differs from ``len(values)``.
    """
    n = math.prod(shape)
    if mask.dtype != torch.uint8 or mask.numel() != (n + 7) // 8:
        raise bad_value("mask", "bitmask_unpack", f"uint8 of {(n + 7) // 8} bytes for shape {list(shape)}",
                        f"{mask.dtype} of {mask.numel()} bytes")
    keep = torch.from_numpy(np.unpackbits(mask.numpy(), count=n, bitorder="little").astype(bool))
    if int(keep.sum()) != values.numel():
        raise bad_value("values", "bitmask_unpack", f"{int(keep.sum())} elements (the mask's set bits)",
                        values.numel())
    out = torch.zeros(n, dtype=values.dtype)
    out[keep] = values.reshape(-1)
    return out.reshape(tuple(shape))


def bitmask_nbytes(n: int, nonzeros: int, itemsize: int) -> int:
    """Bytes of the bitmask form (mask + values) of ``n`` elements with ``nonzeros`` stored, no header."""
    return (n + 7) // 8 + nonzeros * itemsize


def nbit_pack(x: Tensor, bits: int) -> Tensor:
    """Pack unsigned integers ``x`` (any integer dtype, values in ``[0, 2**bits)``) into a uint8 stream.

    Returns shape ``(ceil(n * bits / 8),)``. Raises BadInputError for ``bits`` outside 1..8, a float
    tensor, or values out of range.
    """
    if not isinstance(bits, int) or not 1 <= bits <= 8:
        raise bad_value("bits", "nbit_pack", "an int in 1..8", bits)
    if x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == torch.bool:
        raise bad_value("x", "nbit_pack", "an integer tensor", str(x.dtype))
    flat = x.detach().contiguous().reshape(-1).to(torch.int64)
    if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= 1 << bits):
        raise bad_value("x", "nbit_pack", f"values in [0, {1 << bits})",
                        f"values in [{int(flat.min())}, {int(flat.max())}]")
    arr = flat.numpy().astype(np.uint8)
    # (n, bits) matrix of bits, LSB first, flattened row by row = one LSB-first bit stream.
    bit_matrix = (arr[:, None] >> np.arange(bits, dtype=np.uint8)) & 1
    return torch.from_numpy(np.packbits(bit_matrix.reshape(-1), bitorder="little"))


def nbit_unpack(packed: Tensor, bits: int, n: int) -> Tensor:
    """Inverse of :func:`nbit_pack`: ``n`` values, int64, shape ``(n,)``."""
    if not isinstance(bits, int) or not 1 <= bits <= 8:
        raise bad_value("bits", "nbit_unpack", "an int in 1..8", bits)
    need = (n * bits + 7) // 8
    if packed.dtype != torch.uint8 or packed.numel() != need:
        raise bad_value("packed", "nbit_unpack", f"uint8 of {need} bytes for {n} values of {bits} bits",
                        f"{packed.dtype} of {packed.numel()} bytes")
    stream = np.unpackbits(packed.numpy(), count=n * bits, bitorder="little").reshape(n, bits)
    weights = (1 << np.arange(bits, dtype=np.int64))
    return torch.from_numpy((stream.astype(np.int64) * weights).sum(axis=1))


def int4_pack(x: Tensor) -> Tensor:
    """Pack signed integers in [-8, 7] (any shape, n elements) two per byte: uint8 of ``ceil(n / 2)``."""
    if x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == torch.bool:
        raise bad_value("x", "int4_pack", "an integer tensor", str(x.dtype))
    flat = x.detach().reshape(-1).to(torch.int64)
    if flat.numel() and (int(flat.min()) < -8 or int(flat.max()) > 7):
        raise bad_value("x", "int4_pack", "values in [-8, 7]",
                        f"values in [{int(flat.min())}, {int(flat.max())}]")
    return nbit_pack(flat & 0xF, 4)


def int4_unpack(packed: Tensor, n: int) -> Tensor:
    """Inverse of :func:`int4_pack`: ``n`` values, int8, shape ``(n,)``."""
    u = nbit_unpack(packed, 4, n)
    return torch.where(u >= 8, u - 16, u).to(torch.int8)


# ---- the automatic lossless choice, used by save() for every tensor ------------------------------------

def encode_lossless(name: str, x: Tensor) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Choose dense or bitmask for one tensor; return the tensors to store and the manifest entry.

    Bitmask is chosen when ``mask + values + one extra header entry`` is smaller than dense. Stored keys
    are ``name`` (dense) or ``name + "#mask"`` and ``name + "#values"`` (bitmask). A dense tensor is
    returned as is when contiguous (it may share memory with ``x``).
    """
    x = x.detach()
    entry: dict[str, Any] = {"shape": list(x.shape), "dtype": str(x.dtype).removeprefix("torch.")}
    n, item = x.numel(), x.element_size()
    if x.dtype != torch.bool and not x.dtype.is_complex and n > 0:
        nonzeros = int((_bits_view(x) != 0).sum())
        if bitmask_nbytes(n, nonzeros, item) + ENTRY_OVERHEAD_BYTES < n * item:
            mask, values = bitmask_pack(x)
            entry["encoding"] = "bitmask"
            return {f"{name}#mask": mask, f"{name}#values": values}, entry
    entry["encoding"] = "dense"
    return {name: x.contiguous()}, entry  # not copied: the caller copies a tensor only if it must


def decode_lossless(name: str, entry: dict[str, Any], stored: dict[str, Tensor]) -> Tensor:
    """Inverse of :func:`encode_lossless`. Raises BadInputError when a stored tensor is missing or wrong."""
    enc = entry.get("encoding")
    shape = tuple(int(s) for s in entry.get("shape", ()))
    if enc == "dense":
        if name not in stored:
            raise BadInputError(f"tensor `{name}` is listed in the manifest but missing from the weights.")
        t = stored[name]
    elif enc == "bitmask":
        try:
            mask, values = stored[f"{name}#mask"], stored[f"{name}#values"]
        except KeyError as e:
            raise BadInputError(f"tensor `{name}` (bitmask) is missing `{e.args[0]}` in the weights.") from None
        t = bitmask_unpack(mask, values, shape)
    else:
        raise BadInputError(f"tensor `{name}` has unknown encoding {enc!r} in the manifest.")
    if tuple(t.shape) != shape or str(t.dtype).removeprefix("torch.") != entry.get("dtype"):
        raise BadInputError(f"tensor `{name}` is {t.dtype} {list(t.shape)} in the weights but "
                            f"{entry.get('dtype')} {list(shape)} in the manifest.")
    return t


# ---- entropy coding of a whole file ---------------------------------------------------------------------

def maybe_zstd(data: bytes, *, level: int = ZSTD_LEVEL, min_saving: float = ZSTD_MIN_SAVING) -> bytes | None:
    """zstd-compress ``data`` when that saves at least ``min_saving`` of its size, else None.

    zstandard (the reference zstd binding) is the entropy coder: Huffman/FSE over what the packed
    encodings leave (int8 codes, codebook indices, bitmasks) is what Deep Compression's last stage does.
    A fast probe runs first, so that incompressible dense fp32 files cost little time.
    """
    if not data:
        return None
    # Large files get a lower level: level 19 runs at ~2 MB/s on one core, level 9 at ~40 MB/s, and the
    # extra ratio on float weights is small.
    use = level if len(data) <= (16 << 20) else min(level, 9)
    # A probe (the whole file when small, else 64 slices of 16 KiB spread over it) predicts the ratio:
    # first at the fast level 3 (a clear "no" for dense fp32 costs little), then at the level used, so
    # that a borderline file is not compressed whole in vain (measured on a random-init 538 MB Llama:
    # 64 slices predicted 0.911 and the whole file gave 0.90+, where 4 slices of 256 KiB predicted 0.900
    # and the whole-file attempt cost 5 s).
    cap, slices = 1 << 20, 64
    if len(data) <= cap:
        sample = data
    else:
        step = len(data) // slices
        sample = b"".join(data[i * step: i * step + cap // slices] for i in range(slices))
    for probe_level, margin in ((3, 0.03), (use, 0.005)):
        ratio = len(zstandard.ZstdCompressor(level=probe_level).compress(sample)) / len(sample)
        if ratio > 1.0 - min_saving + margin:
            return None
        if sample is data:
            break  # the probe was the whole file: decide on the real result below
    out = zstandard.ZstdCompressor(level=use).compress(data)
    return out if len(out) <= (1.0 - min_saving) * len(data) else None


def zstd_decompress(data: bytes) -> bytes:
    """Decompress a zstd frame written by :func:`maybe_zstd`; BadInputError when it is corrupt."""
    try:
        return zstandard.ZstdDecompressor().decompress(data)
    except zstandard.ZstdError as e:
        raise BadInputError(f"compressed weights are corrupt ({e}). Fix: save the model again.") from None
