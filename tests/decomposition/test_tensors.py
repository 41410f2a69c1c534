"""Tucker-2 and CP of conv kernels: planted kernels recovered, and how long a 128×128×3×3 conv takes."""

import time

import pytest
import torch

from modelpress.decomposition.tensors import cp_kernel, relative_error, tucker2_kernel, unfold
from modelpress.errors import BadInputError


def test_planted_tucker_kernel_is_recovered_to_1e_3():
    g = torch.Generator().manual_seed(0)
    core = torch.randn(8, 6, 3, 3, generator=g)
    u_out = torch.linalg.qr(torch.randn(32, 8, generator=g))[0]
    u_in = torch.linalg.qr(torch.randn(24, 6, generator=g))[0]
    w = torch.einsum("ob,bayx,ca->ocyx", u_out, core, u_in)
    t = tucker2_kernel(w, (8, 6))
    assert t.core.shape == (8, 6, 3, 3) and t.out_factor.shape == (32, 8) and t.in_factor.shape == (24, 6)
    assert relative_error(w, t.dense()) <= 1e-3


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_planted_cp_kernel_is_recovered_to_1e_3(seed):
    g = torch.Generator().manual_seed(seed)
    factors = [torch.randn(n, 6, generator=g) for n in (32, 24, 3, 3)]
    w = torch.einsum("or,cr,yr,xr->ocyx", *factors)
    cp = cp_kernel(w, 6, n_iter=200, seed=seed)
    assert cp.out.shape == (32, 6) and cp.vertical.shape == (3, 6)
    assert relative_error(w, cp.dense()) <= 1e-3
    # the scale is split evenly: the four factors of each component have equal norms
    norms = torch.stack([f.norm(dim=0) for f in (cp.out, cp.inp, cp.vertical, cp.horizontal)])
    assert torch.allclose(norms, norms[0].expand_as(norms), rtol=1e-4)


def test_unfold():
    w = torch.arange(24.0).reshape(2, 3, 2, 2)
    assert unfold(w, 1).shape == (3, 8) and torch.equal(unfold(w, 0), w.reshape(2, 12))


def test_tucker_of_a_128x128x3x3_conv_takes_at_most_1_s():
    tucker2_kernel(torch.randn(8, 8, 3, 3), (4, 4))  # first call: tensorly's one-time setup, not counted
    w = torch.randn(128, 128, 3, 3, generator=torch.Generator().manual_seed(0))
    # CPU time of this process (torch runs 1 thread here): wall time on 2 cores shared by ~16 jobs measures
    # the other jobs too (1.3 s wall at load 18 for 0.15-0.3 s of CPU)
    start = time.process_time()
    tucker2_kernel(w, (64, 64), n_iter=10)
    assert time.process_time() - start <= 1.0


def test_cp_of_a_128x128x3x3_conv_takes_a_few_seconds():
    w = torch.randn(128, 128, 3, 3, generator=torch.Generator().manual_seed(0))
    start = time.process_time()
    cp_kernel(w, 64, n_iter=25)
    # CPU time; measured 1.1-3.4 s here at 25 ALS iterations (1 thread): CP-ALS is the slow one
    assert time.process_time() - start <= 10.0


@pytest.mark.parametrize(("call", "msg"), [
    (lambda: tucker2_kernel(torch.randn(4, 4), (2, 2)), "4-D conv kernel"),
    (lambda: tucker2_kernel(torch.randn(4, 3, 3, 3), (5, 2)), "`ranks` of `tucker2_kernel`"),
    (lambda: cp_kernel(torch.randn(4, 3, 3, 3), 0), "`rank` of `cp_kernel` must be an int >= 1"),
])
def test_bad_input_is_a_clear_error(call, msg):
    with pytest.raises(BadInputError, match=msg):
        call()
