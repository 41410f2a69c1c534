"""Tensor decomposition (Tucker-2, CP) of convolutions, ranks by EVBMF: the `Decompose` step.

>>> import modelpress as mp
>>> log = mp.compress_(model, mp.Decompose(method="tucker", rank="vbmf"), task=task)   # doctest: +SKIP
"""

from modelpress.decomposition.config import Decompose
from modelpress.decomposition.modules import CPConv2d, TuckerConv2d
from modelpress.decomposition.step import apply_decompose
from modelpress.decomposition.tensors import cp_kernel, tucker2_kernel
from modelpress.decomposition.vbmf import evbmf, vbmf_rank

__all__ = ["CPConv2d", "Decompose", "TuckerConv2d", "apply_decompose", "cp_kernel", "evbmf", "tucker2_kernel",
           "vbmf_rank"]
