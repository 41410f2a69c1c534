"""The `LowRank` step's configuration (recipe key ``lowrank``), and the rank settings it shares with
`Decompose`: how a rank is given, per-layer overrides, rounding, and the keep-or-roll-back rule."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from modelpress.errors import bad_value, is_int, is_number

__all__ = ["CONV_MODES", "OBJECTIVES", "ROUND_TO", "LowRank", "check_judging", "check_rank_setting", "parse_per_layer"]

CONV_MODES = ("spatial", "channel")
OBJECTIVES = ("latency", "size")
ROUND_TO = (1, 2, 4, 8, 16, 32, 64)


def _fraction_01(x: object) -> bool:
    return is_number(x) and 0 < x <= 1


def check_rank_setting(owner: str, key: str, value: object, *, where: str = "") -> None:
    """Raise BadInputError unless ``value`` is a valid ``rank`` (int ≥ 1), ``ratio`` or ``energy`` (in (0, 1])."""
    name = f"{where}{key}"
    if key == "rank" and not is_int(value, 1):
        raise bad_value(name, owner, "an int >= 1 (the rank kept)", value,
                        "use `ratio` for a fraction of the full rank.")  # fmt: skip
    if key in ("ratio", "energy") and not _fraction_01(value):
        raise bad_value(name, owner, "a fraction in (0, 1]", value)


def parse_per_layer(per_layer: Any, owner: str, keys: tuple[str, ...],
                    extra: tuple[str, ...] = ()) -> tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] | None:  # fmt: skip
    """``{name_regex: {key: value}}`` (or a list of pairs) as a tuple of ``(regex, ((key, value),))``.

    Each value is a mapping with exactly one of ``keys`` (e.g. ``rank`` / ``ratio`` / ``energy``); ``extra``
    keys are allowed strings (``rank: vbmf``). Raises BadInputError naming the bad entry.
    """
    if per_layer is None:
        return None
    if isinstance(per_layer, Mapping):
        items = list(per_layer.items())
    elif isinstance(per_layer, (list, tuple)) and all(isinstance(p, (list, tuple)) and len(p) == 2 for p in per_layer):
        items = [tuple(p) for p in per_layer]
    else:
        raise bad_value("per_layer", owner, "a mapping {name_regex: {rank: int}} or a list of pairs", per_layer)
    out = []
    for pattern, body in items:
        if not isinstance(pattern, str):
            raise bad_value("per_layer", owner, "keys that are regular expressions", pattern)
        try:
            re.compile(pattern)
        except re.error as e:
            raise bad_value("per_layer", owner, f"valid regular expressions ({e})", pattern) from e
        if isinstance(body, (list, tuple)) and all(isinstance(p, (list, tuple)) and len(p) == 2 for p in body):
            body = dict(body)
        if not isinstance(body, Mapping) or len(body) != 1 or next(iter(body)) not in keys:
            raise bad_value(f"per_layer[{pattern!r}]", owner, f"a mapping with exactly one of {list(keys)}", body,
                            "e.g. {'fc1': {'rank': 64}}.")  # fmt: skip
        key, value = next(iter(body.items()))
        if not (isinstance(value, str) and value in extra):
            check_rank_setting(owner, key, value, where=f"per_layer[{pattern!r}].")
        out.append((pattern, ((key, value),)))
    return tuple(out)


def check_judging(owner: str, round_to: object, objective: object, margin: object, runs: object) -> None:
    """Validate the settings shared by `LowRank` and `Decompose` that round ranks and judge layers."""
    if round_to != "auto" and (type(round_to) is not int or round_to not in ROUND_TO):
        raise bad_value("round_to", owner, f"'auto' or one of {list(ROUND_TO)}", round_to,
                        "'auto' reads the SIMD width from /proc/cpuinfo (16 with AVX-512, else 8).")  # fmt: skip
    if objective not in OBJECTIVES:
        raise bad_value("objective", owner, f"one of {list(OBJECTIVES)}", objective)
    if not is_number(margin) or not 0 <= margin < 0.5:
        raise bad_value("margin", owner, "a fraction in [0, 0.5) (the speed-up a layer must show)", margin)
    if not is_int(runs, 5):
        raise bad_value("runs", owner, "an int >= 5 (timed calls per layer and form)", runs)


@dataclass(frozen=True)
class LowRank:
    """Truncated-SVD factorization of ``nn.Linear`` and ``nn.Conv2d`` layers into two smaller layers.

    - Linear ``(out, in)``: ``W ≈ L·R`` as ``Linear(in → r)`` then ``Linear(r → out)`` (bias on the second).
    - Conv2d, ``conv: "spatial"`` (Jaderberg et al. 2014): k×k → k×1 (``in → r``) then 1×k (``r → out``),
      the SVD of the kernel unfolded to ``(in·kh, out·kw)``; ``conv: "channel"``: a 1×1 bottleneck,
      k×k (``in → r``) then 1×1 (``r → out``), the SVD of ``(out, in·kh·kw)``. 1×1 kernels always use the
      channel form. Stride, padding, dilation and bias are preserved.

    The rank of each layer is given by exactly one of:

    - ``rank``: an int ≥ 1, used as given (not rounded);
    - ``ratio``: a fraction in (0, 1] of the layer's full rank ``min(m, n)``;
    - ``energy``: a fraction in (0, 1] of the squared singular values to keep (the default, 0.9).

    ``per_layer``: ``{name_regex: {"rank" | "ratio" | "energy": value}}`` overrides for the layers whose
    qualified name fully matches (first match wins). Ranks from ``ratio`` / ``energy`` are rounded to
    multiples of ``round_to`` (``"auto"``: 16 on AVX-512 CPUs, else 8) and never reach the parameter
    break-even ``m·n / (m + n)``. A ``rank`` or ``ratio`` of 0, above the full rank or at / above the
    break-even is a BadInputError naming the layer; an ``energy`` that needs such a rank leaves the layer
    dense (reported).

    Every factored layer is exported alone to ONNX and timed in onnxruntime against its dense form, at
    the deployment target's batch size and threads, interleaved over ``runs`` calls each. It is kept when
    ``objective="latency"`` and it is at least ``margin`` faster (lower quartile of its timed calls:
    on a shared machine pre-emption inflates the median of the longer call more), or ``objective="size"`` and it
    has fewer parameters; otherwise it is rolled back to the dense layer. The step's details list every
    layer: ``layers: [{module, decision, why, rank, params_before, params_after, dense_ms, new_ms, energy}]``.

    Raises BadInputError (via ``bad_value``) for any value outside these ranges.
    """

    rank: int | None = None
    ratio: float | None = None
    energy: float | None = None
    per_layer: Any = None
    conv: str = "spatial"
    round_to: int | str = "auto"
    objective: str = "latency"
    margin: float = 0.05
    runs: int = 40

    def __post_init__(self) -> None:
        own = "LowRank"
        given = [k for k in ("rank", "ratio", "energy") if getattr(self, k) is not None]
        if len(given) > 1:
            raise bad_value("rank / ratio / energy", own, "exactly one of them", {k: getattr(self, k) for k in given},
                            "give the rank one way; use per_layer for exceptions.")  # fmt: skip
        if not given:
            object.__setattr__(self, "energy", 0.9)
        for key in ("rank", "ratio", "energy"):
            if getattr(self, key) is not None:
                check_rank_setting(own, key, getattr(self, key))
        if self.conv not in CONV_MODES:
            raise bad_value("conv", own, f"one of {list(CONV_MODES)}", self.conv)
        check_judging(own, self.round_to, self.objective, self.margin, self.runs)
        object.__setattr__(self, "per_layer", parse_per_layer(self.per_layer, own, ("rank", "ratio", "energy")))

    def setting_for(self, name: str) -> tuple[str, Any]:
        """``(key, value)`` giving the rank of layer ``name``: its ``per_layer`` override, else the global one."""
        for pattern, ((key, value),) in self.per_layer or ():
            if re.fullmatch(pattern, name):
                return key, value
        key = next(k for k in ("rank", "ratio", "energy") if getattr(self, k) is not None)
        return key, getattr(self, key)

    def to_dict(self) -> dict[str, Any]:
        body = asdict(self)
        body["per_layer"] = None if self.per_layer is None else {p: dict(kv) for p, kv in self.per_layer}
        return body
