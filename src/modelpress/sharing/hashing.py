"""The position hash of HashedNets (pure functions, numpy uint64 arithmetic).

Chen et al. (2015) hash each virtual weight's position to a bucket and, with a second hash, to a sign.
The hash must give the same buckets on every machine and in every process, or a saved model would decode
to other weights: so it is SplitMix64's finaliser (Steele et al. 2014; a bijective 64-bit mixer with
full avalanche) over plain uint64 arithmetic, which numpy wraps modulo 2**64 everywhere — not Python's
salted ``hash`` and not torch's RNG, whose streams may change between versions.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from modelpress.errors import bad_value, is_int

__all__ = ["hash_positions", "splitmix64"]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 of each element of ``x`` (uint64 array, any shape), as uint64."""
    z = np.asarray(x, dtype=np.uint64) + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def hash_positions(n: int, buckets: int, seed: int) -> tuple[Tensor, Tensor]:
    """Bucket and sign of each of ``n`` virtual weights (row-major positions 0..n-1) for ``seed``.

    Returns ``(bucket, sign)``: int64 in ``[0, buckets)`` and float32 in {-1, +1}, each of shape ``(n,)``.
    The bucket is ``h(2·seed, i) mod buckets``, the sign the lowest bit of ``h(2·seed + 1, i)``, with
    ``h(s, i) = splitmix64(splitmix64(s) + i)``. Raises BadInputError for ``n < 0``, ``buckets < 1`` or
    a negative ``seed``.
    """
    if not is_int(n, 0):
        raise bad_value("n", "hash_positions", "an int >= 0", n)
    if not is_int(buckets, 1):
        raise bad_value("buckets", "hash_positions", "an int >= 1", buckets)
    if not is_int(seed, 0) or seed >= 1 << 62:
        raise bad_value("seed", "hash_positions", "an int in [0, 2**62)", seed)
    pos = np.arange(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        k1, k2 = splitmix64(np.array([2 * seed, 2 * seed + 1], dtype=np.uint64))
        h1 = splitmix64(pos + k1)
        h2 = splitmix64(pos + k2)
    bucket = torch.from_numpy((h1 % np.uint64(buckets)).astype(np.int64))
    sign = torch.from_numpy(np.where(h2 & np.uint64(1), -1.0, 1.0).astype(np.float32))
    return bucket, sign
