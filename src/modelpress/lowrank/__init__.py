"""Low-rank factorization (truncated SVD) of Linear and Conv2d layers: the `LowRank` step.

>>> import modelpress as mp
>>> log = mp.compress_(model, mp.LowRank(energy=0.9), task=task)      # doctest: +SKIP
>>> [(r["module"], r["decision"], r["rank"]) for r in log.details["layers"]]   # doctest: +SKIP
"""

from modelpress.lowrank.config import LowRank
from modelpress.lowrank.modules import ChannelFactoredConv2d, FactoredLinear, SpatialFactoredConv2d
from modelpress.lowrank.ranks import break_even, max_rank, rank_for_energy, round_rank, truncated_svd
from modelpress.lowrank.step import apply_lowrank

__all__ = [
    "ChannelFactoredConv2d",
    "FactoredLinear",
    "LowRank",
    "SpatialFactoredConv2d",
    "apply_lowrank",
    "break_even",
    "max_rank",
    "rank_for_energy",
    "round_rank",
    "truncated_svd",
]
