"""Shared checks for factored layers (low-rank and tensor-decomposed): modules whose factors are plain
torch children."""

import torch
from torch import nn

from modelpress.artifact.packed import PackedModule


def check_factored_swap(m: nn.Module, x: torch.Tensor) -> tuple[nn.Module, nn.Module]:
    """Assert the swap protocol of factored module ``m`` (eval mode) on input ``x``: ``pack`` stores no
    tensors of its own (the factors are children), ``unpack`` rebuilds the children at their stored shapes
    and computes exactly ``m``, and ``export_module`` is plain torch layers computing exactly ``m``; and
    ``to_dense`` agrees within 1e-4. Returns ``(exported, dense)`` for the caller's own checks."""
    assert isinstance(m, PackedModule)
    tensors, meta = m.pack()
    assert tensors == {}
    rebuilt = type(m).unpack(tensors, meta)
    assert [tuple(t.shape) for t in rebuilt.state_dict().values()] == [tuple(t.shape) for t in m.state_dict().values()]
    rebuilt.load_state_dict(m.state_dict())
    assert torch.equal(rebuilt.eval()(x), m(x))
    exported = m.export_module()
    assert all(type(c).__module__.startswith("torch.nn") for c in exported.modules())
    assert torch.equal(exported(x), m(x))
    dense = m.to_dense()
    assert torch.allclose(dense(x), m(x), atol=1e-4, rtol=1e-5)
    return exported, dense
