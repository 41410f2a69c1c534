"""Pure rank functions: planted low-rank recovery, energy, break-even, rounding."""

from pathlib import Path

import pytest
import torch

from modelpress.errors import BadInputError
from modelpress.lowrank.ranks import (
    break_even,
    energy_at,
    max_rank,
    rank_for_energy,
    round_rank,
    simd_block,
    truncated_svd,
)


@pytest.mark.parametrize(("m", "n", "r"), [(60, 40, 7), (300, 784, 20), (16, 16, 1)])
def test_planted_low_rank_matrix_is_recovered_to_1e_5(m, n, r):
    g = torch.Generator().manual_seed(m + n + r)
    w = torch.randn(m, r, generator=g) @ torch.randn(r, n, generator=g)
    left, right, s = truncated_svd(w, r)
    assert left.shape == (m, r) and right.shape == (r, n) and left.dtype == torch.float32
    rel = float((left @ right - w).abs().max() / w.abs().max())
    assert rel <= 1e-5
    assert float(s[r:].max() if r < min(m, n) else 0) <= 1e-4 * float(s[0])  # nothing beyond the planted rank


def test_factors_are_balanced_and_singular_values_exact():
    u, _ = torch.linalg.qr(torch.randn(20, 4, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(30, 4, dtype=torch.float64))
    w = u @ torch.diag(torch.tensor([9.0, 4.0, 1.0, 0.25], dtype=torch.float64)) @ v.T
    left, right, s = truncated_svd(w, 2)
    assert torch.allclose(s[:4], torch.tensor([9.0, 4.0, 1.0, 0.25], dtype=torch.float64), atol=1e-12)
    # sqrt(S) on each side: column norms of left equal row norms of right (3 and 2)
    assert torch.allclose(left.norm(dim=0), torch.tensor([3.0, 2.0], dtype=torch.float64), atol=1e-12)
    assert torch.allclose(right.norm(dim=1), torch.tensor([3.0, 2.0], dtype=torch.float64), atol=1e-12)


def test_energy_and_rank_for_energy():
    s = torch.tensor([4.0, 3.0, 2.0, 1.0])  # squares 16, 9, 4, 1 of 30
    assert energy_at(s, 2) == pytest.approx(25 / 30)
    assert rank_for_energy(s, 0.5) == 1  # 16 / 30 = 0.53
    assert rank_for_energy(s, 25 / 30) == 2
    assert rank_for_energy(s, 0.9) == 3
    assert rank_for_energy(s, 1.0) == 4


def test_break_even_and_max_rank():
    assert break_even(128, 128) == 64
    assert max_rank(128, 128) == 63  # rank 64 would store exactly as many parameters
    assert 63 * 256 < 128 * 128 <= 64 * 256
    assert max_rank(300, 784) == 216  # break-even 216.97
    assert max_rank(10, 1) == 0  # a vector never gets smaller


@pytest.mark.parametrize(("rank", "multiple", "limit", "want"),
                         [(75, 16, 216, 80), (70, 16, 216, 64), (3, 16, 216, 16), (60, 16, 63, 48),
                          (5, 16, 9, 5), (12, 16, 9, 9), (7, 1, 100, 7), (100, 8, 63, 56)])
def test_round_rank(rank, multiple, limit, want):
    assert round_rank(rank, multiple, limit) == want


def test_simd_block_reads_cpuinfo():
    text = Path("/proc/cpuinfo").read_text()
    flags = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    assert simd_block() == (16 if "avx512f" in flags.split() else 8)


@pytest.mark.parametrize("rank", [0, 41, 2.5, True])
def test_bad_rank_is_a_clear_error(rank):
    with pytest.raises(BadInputError, match="`rank` of `truncated_svd` must be an int in \\[1, 40\\]"):
        truncated_svd(torch.randn(50, 40), rank)


def test_non_matrix_is_a_clear_error():
    with pytest.raises(BadInputError, match="2-D tensor"):
        truncated_svd(torch.randn(3, 4, 5), 1)
