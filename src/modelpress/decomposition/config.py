"""The `Decompose` step's configuration (recipe key ``decompose``)."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from modelpress.errors import bad_value, is_int
from modelpress.lowrank.config import check_judging, check_rank_setting, parse_per_layer

__all__ = ["METHODS", "Decompose"]

METHODS = ("tucker", "cp")


@dataclass(frozen=True)
class Decompose:
    """Tensor decomposition of k×k ``nn.Conv2d`` layers (kh, kw > 1; 1×1 convs are a matrix: use `LowRank`).

    - ``method="tucker"`` — Tucker-2 on the two channel modes (Kim et al. 2016): 1×1 ``in → r_in``, k×k core
      ``r_in → r_out``, 1×1 ``r_out → out``.
    - ``method="cp"`` — CP (Lebedev et al. 2015): 1×1 ``in → R``, kh×1 and 1×kw depthwise, 1×1 ``R → out``.

    The ranks of each layer are given by exactly one of:

    - ``rank``: ``"vbmf"`` (the default) — empirical variational Bayesian matrix factorization (Nakajima
      et al. 2013) of the kernel's mode-0 and mode-1 unfoldings gives ``r_out`` and ``r_in`` (CP: the
      larger of the two); or an int ≥ 1 (Tucker: both ranks, capped at the channel counts; CP: ``R``),
      used as given;
    - ``ratio``: a fraction in (0, 1] of the channels (Tucker: ``r_out = ratio·out``, ``r_in = ratio·in``;
      CP: ``R = ratio·min(in, out)``).

    ``per_layer``: ``{name_regex: {"rank" | "ratio": value}}`` overrides (first full match wins). Ranks
    from ``vbmf`` / ``ratio`` are rounded to multiples of ``round_to`` (``"auto"``: 16 on AVX-512, else
    8). A given ``rank`` / ``ratio`` whose decomposition has at least as many parameters as the conv is
    a BadInputError naming the layer; a ``vbmf`` rank that does is reported and the layer left dense.
    ``n_iter``: iterations of HOOI (Tucker; default 10, it starts from the SVD and converges fast) or
    ALS (CP; default 25).

    Every decomposed layer is timed against its dense form in onnxruntime at the deployment target's
    batch size and threads and kept only when ``objective="latency"`` and at least ``margin`` faster,
    or ``objective="size"`` and smaller (see `LowRank`); the details list every layer.

    Raises BadInputError (via ``bad_value``) for any value outside these ranges.
    """

    method: str = "tucker"
    rank: int | str | None = None
    ratio: float | None = None
    per_layer: Any = None
    n_iter: int | None = None
    round_to: int | str = "auto"
    objective: str = "latency"
    margin: float = 0.05
    runs: int = 40

    def __post_init__(self) -> None:
        own = "Decompose"
        if self.method not in METHODS:
            raise bad_value("method", own, f"one of {list(METHODS)}", self.method)
        if self.rank is not None and self.ratio is not None:
            raise bad_value("rank / ratio", own, "exactly one of them", {"rank": self.rank, "ratio": self.ratio},
                            "give the rank one way; use per_layer for exceptions.")  # fmt: skip
        if self.rank is None and self.ratio is None:
            object.__setattr__(self, "rank", "vbmf")
        if self.rank is not None and self.rank != "vbmf":
            if isinstance(self.rank, str):
                raise bad_value("rank", own, "'vbmf' or an int >= 1", self.rank)
            check_rank_setting(own, "rank", self.rank)
        if self.ratio is not None:
            check_rank_setting(own, "ratio", self.ratio)
        if self.n_iter is not None and not is_int(self.n_iter, 1):
            raise bad_value("n_iter", own, "an int >= 1 or null (the method's default)", self.n_iter)
        check_judging(own, self.round_to, self.objective, self.margin, self.runs)
        object.__setattr__(self, "per_layer", parse_per_layer(self.per_layer, own, ("rank", "ratio"), ("vbmf",)))

    @property
    def iterations(self) -> int:
        """HOOI / ALS iterations: ``n_iter``, else 10 for Tucker and 25 for CP."""
        return self.n_iter or (10 if self.method == "tucker" else 25)

    def setting_for(self, name: str) -> tuple[str, Any]:
        """``(key, value)`` giving the ranks of layer ``name``: its ``per_layer`` override, else the global one."""
        for pattern, ((key, value),) in self.per_layer or ():
            if re.fullmatch(pattern, name):
                return key, value
        return ("rank", self.rank) if self.rank is not None else ("ratio", self.ratio)

    def to_dict(self) -> dict[str, Any]:
        body = asdict(self)
        body["per_layer"] = None if self.per_layer is None else {p: dict(kv) for p, kv in self.per_layer}
        return body
