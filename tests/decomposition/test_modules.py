"""Tucker and CP convs: the swap protocol and the conv geometry they keep."""

import pytest
import torch
from torch import nn

from modelpress.decomposition.modules import CPConv2d, TuckerConv2d
from modelpress.decomposition.tensors import cp_kernel, relative_error, tucker2_kernel
from modelpress.lowrank.modules import conv_geometry
from tests.factored_checks import check_factored_swap


@pytest.mark.parametrize("cls", [TuckerConv2d, CPConv2d])
def test_example_follows_the_swap_protocol(cls):
    m, (x,) = cls.example()
    m.eval()
    _, dense = check_factored_swap(m, x)
    assert type(dense) is nn.Conv2d and dense.stride == (2, 1) and dense.dilation == (1, 2)


@pytest.mark.parametrize("kw", [{"stride": 2, "padding": 1}, {"stride": (2, 1), "padding": (0, 2), "dilation": (1, 2)},
                                {"padding": "same", "bias": False}])
def test_full_rank_tucker_reproduces_the_conv(kw):
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 10, 3, **kw).eval()
    t = tucker2_kernel(conv.weight, (10, 6))
    new = TuckerConv2d.from_factors(conv_geometry(conv), t, None if conv.bias is None else conv.bias.detach())
    x = torch.randn(2, 6, 11, 13)
    assert torch.allclose(new(x), conv(x), atol=1e-5)


def test_planted_cp_conv_reproduces_the_conv_with_stride_and_dilation():
    g = torch.Generator().manual_seed(0)
    conv = nn.Conv2d(8, 12, (3, 5), stride=(1, 2), padding=(2, 1), dilation=(2, 1)).eval()
    with torch.no_grad():
        conv.weight.copy_(torch.einsum("or,cr,yr,xr->ocyx", *(torch.randn(n, 4, generator=g) for n in (12, 8, 3, 5))))
    cp = cp_kernel(conv.weight, 4, n_iter=200)
    assert relative_error(conv.weight, cp.dense()) <= 1e-3
    new = CPConv2d.from_factors(conv_geometry(conv), cp, conv.bias.detach())
    x = torch.randn(2, 8, 14, 15)
    want = conv(x)
    assert new(x).shape == want.shape
    assert torch.allclose(new(x), want, atol=1e-3 * float(want.abs().max()))
    assert new.vertical.groups == 4 and new.horizontal.groups == 4  # depthwise
