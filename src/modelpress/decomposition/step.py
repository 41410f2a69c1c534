"""The `Decompose` step handler: Tucker-2 or CP of k×k convs, each kept only where it pays."""

from __future__ import annotations

from typing import Any

from torch import nn

from modelpress.context import StepContext, StepLog
from modelpress.decomposition.config import Decompose
from modelpress.decomposition.modules import CPConv2d, TuckerConv2d
from modelpress.decomposition.tensors import cp_kernel, relative_error, tucker2_kernel, unfold
from modelpress.decomposition.vbmf import vbmf_rank
from modelpress.errors import BadInputError
from modelpress.lowrank.judge import Candidate, judge_and_swap
from modelpress.lowrank.modules import conv_geometry
from modelpress.lowrank.ranks import round_rank
from modelpress.lowrank.step import rank_multiple, summary
from modelpress.select import targets

__all__ = ["apply_decompose", "cp_params", "decompose_ranks", "tucker_params"]


def tucker_params(cout: int, cin: int, kh: int, kw: int, r_out: int, r_in: int) -> int:
    """Weights of a Tucker-2 conv (1×1 in → r_in, core r_in → r_out, 1×1 r_out → out), bias excluded."""
    return cin * r_in + r_in * r_out * kh * kw + r_out * cout


def cp_params(cout: int, cin: int, kh: int, kw: int, rank: int) -> int:
    """Weights of a CP conv (1×1 in → R, kh×1 and 1×kw depthwise, 1×1 R → out), bias excluded."""
    return rank * (cin + kh + kw + cout)


def _cp_max(cout: int, cin: int, kh: int, kw: int) -> int:
    return max(0, -(-cout * cin * kh * kw // (cin + kh + kw + cout)) - 1)


def decompose_ranks(name: str, w_shape: tuple[int, ...], key: str, value: Any, method: str, multiple: int,
                    vbmf: tuple[int, int] | None = None) -> tuple[Any, str]:  # fmt: skip
    """The ranks for layer ``name`` (kernel shape ``(out, in, kh, kw)``): ``[r_out, r_in]`` (Tucker) or
    ``R`` (CP), or ``(None, why)`` when a ``vbmf`` rank would not make the layer smaller. ``vbmf``: the
    EVBMF ranks of the mode-0 / mode-1 unfoldings (needed for ``value == "vbmf"``).
    Raises BadInputError naming the layer for a given ``rank`` / ``ratio`` that does not make it smaller."""
    cout, cin, kh, kw = w_shape
    dense = cout * cin * kh * kw
    given = value != "vbmf"
    if method == "tucker":
        if key == "ratio":
            ranks = [round_rank(max(1, round(value * cout)), multiple, cout),
                     round_rank(max(1, round(value * cin)), multiple, cin)]  # fmt: skip
        elif given:
            ranks = [min(int(value), cout), min(int(value), cin)]
        else:
            ranks = [round_rank(vbmf[0], multiple, cout), round_rank(vbmf[1], multiple, cin)]
        after = tucker_params(cout, cin, kh, kw, *ranks)
    else:
        top = _cp_max(cout, cin, kh, kw)
        if key == "ratio":
            ranks = round_rank(max(1, round(value * min(cin, cout))), multiple, max(top, 1))
        elif given:
            ranks = int(value)
        else:
            ranks = round_rank(max(vbmf), multiple, max(top, 1))
        after = cp_params(cout, cin, kh, kw, ranks)
    if after < dense:
        return ranks, ""
    why = (f"{method} rank {ranks} of layer `{name}` gives {after} parameters, not fewer than the conv's {dense} "
           f"({cout}×{cin}×{kh}×{kw})")  # fmt: skip
    if given:
        raise BadInputError(f"{why}: it is at or above the break-even. Fix: give `Decompose` a smaller rank for "
                            "it (per_layer) or leave it out (select).")  # fmt: skip
    return None, why


def _propose(name: str, conv: nn.Conv2d, config: Decompose, multiple: int, seed: int,
             log: StepLog) -> Candidate | None:  # fmt: skip
    geo = conv_geometry(conv)
    if geo is None:
        log.skip(name, "grouped / depthwise conv, non-zero padding mode or asymmetric 'same' padding: not decomposed")
        return None
    if min(conv.kernel_size) == 1:
        log.skip(name, f"{conv.kernel_size[0]}×{conv.kernel_size[1]} kernel is a matrix, not a 4-D tensor: "
                       "factor it with the lowrank step")  # fmt: skip
        return None
    w = conv.weight.detach()
    key, value = config.setting_for(name)
    vbmf = (vbmf_rank(unfold(w, 0)), vbmf_rank(unfold(w, 1))) if value == "vbmf" else None
    ranks, why = decompose_ranks(name, tuple(w.shape), key, value, config.method, multiple, vbmf)
    if ranks is None:
        log.skip(name, why)
        return None
    bias = None if conv.bias is None else conv.bias.detach()
    if config.method == "tucker":
        t = tucker2_kernel(w, (ranks[0], ranks[1]), n_iter=config.iterations)
        new = TuckerConv2d.from_factors(geo, t, bias)
    else:
        t = cp_kernel(w, ranks, n_iter=config.iterations, seed=seed)
        new = CPConv2d.from_factors(geo, t, bias)
    energy = 1.0 - relative_error(w, t.dense()) ** 2
    return Candidate(name, conv, new.to(w.device), ranks, energy)


def apply_decompose(model: nn.Module, config: Decompose, ctx: StepContext) -> StepLog:
    """Decompose the selected k×k Conv2d layers of ``model`` in place (see `Decompose`).

    Each decomposed conv is timed against its dense form in onnxruntime at ``ctx.target`` and rolled back
    unless it passes ``config.objective``. Returns a `StepLog` whose details hold ``layers`` (one row per
    decomposed conv), totals and the timing setting. Conv2d subclasses with their own forward, grouped /
    depthwise and 1×1 convs are skipped with the reason. Raises BadInputError for a given rank that does
    not make a layer smaller (naming it).
    """
    log = StepLog("decompose", config.to_dict())
    found, skipped = targets(model, ctx.select, (nn.Conv2d,), step="decompose",
                             replaced_by="a decomposed form")
    log.skipped.extend(skipped)
    multiple = rank_multiple(config.round_to)
    candidates = []
    for t in found:
        c = _propose(t.name, t.module, config, multiple, ctx.seed, log)
        if c is not None:
            candidates.append(c)
    rows = judge_and_swap(model, candidates, ctx, log, objective=config.objective, margin=config.margin,
                          runs=config.runs)  # fmt: skip
    log.details.update(summary(rows, multiple, ctx))
    log.details["method"] = config.method
    return log
