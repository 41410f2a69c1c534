"""The HashedNets position hash is the same on every run and machine (golden values)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modelpress.errors import BadInputError
from modelpress.sharing.hashing import hash_positions, splitmix64


def test_splitmix64_matches_the_reference_outputs():
    # SplitMix64 (Steele, Lea & Flood 2014) seeded with 0 and 1: the first output of the reference
    # generator, as in Java's SplittableRandom and Vigna's C code.
    out = splitmix64(np.array([0, 1], dtype=np.uint64))
    assert [int(x) for x in out] == [0xE220A8397B1DCDAF, 0x910A2DEC89025CC1]


def test_buckets_and_signs_are_golden():
    bucket, sign = hash_positions(10, 7, 3)
    assert bucket.tolist() == [5, 0, 1, 6, 4, 3, 6, 4, 4, 1]
    assert sign.tolist() == [-1.0, -1.0, -1.0, 1.0, -1.0, -1.0, -1.0, 1.0, 1.0, 1.0]


def test_buckets_fill_evenly_and_signs_balance():
    bucket, sign = hash_positions(80_000, 1000, 11)
    counts = torch.bincount(bucket, minlength=1000).float()
    # A uniform hash gives a chi-square statistic ~ chi2(999): mean 999, standard deviation 44.7.
    chi2 = float(((counts - 80) ** 2 / 80).sum())
    assert abs(chi2 - 999) < 5 * 44.7, chi2
    assert abs(float(sign.mean())) < 0.02  # 4.5 standard errors of a fair sign


def test_seeds_give_independent_hashes():
    a, _ = hash_positions(1000, 50, 0)
    b, _ = hash_positions(1000, 50, 1)
    assert float((a == b).float().mean()) < 0.05  # chance agreement is 1/50


@pytest.mark.parametrize(("args", "match"), [((-1, 3, 0), "`n`"), ((5, 0, 0), "`buckets`"), ((5, 3, -2), "`seed`")])
def test_bad_arguments(args, match):
    with pytest.raises(BadInputError, match=match):
        hash_positions(*args)
