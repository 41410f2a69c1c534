"""The `LowRank` step handler: truncated SVD of Linear and Conv2d layers, each kept only where it pays."""

from __future__ import annotations

from torch import nn

from modelpress.context import StepContext, StepLog
from modelpress.lowrank.config import LowRank
from modelpress.lowrank.factor import choose_rank, factor, layer_matrix
from modelpress.lowrank.judge import Candidate, judge_and_swap
from modelpress.lowrank.ranks import simd_block, truncated_svd
from modelpress.select import targets

__all__ = ["apply_lowrank", "rank_multiple", "summary"]


def rank_multiple(round_to: int | str) -> int:
    """The rank multiple for ``round_to`` (``"auto"``: this CPU's SIMD block, `simd_block`)."""
    return simd_block() if round_to == "auto" else int(round_to)


def _propose(name: str, module: nn.Module, config: LowRank, multiple: int, log: StepLog) -> Candidate | None:
    try:
        plan = layer_matrix(module, config.conv)
    except ValueError as e:
        log.skip(name, f"{type(module).__name__} not factored: {e}")
        return None
    m, n = plan.matrix.shape
    svd = truncated_svd(plan.matrix, min(m, n))
    s = svd[2]
    key, value = config.setting_for(name)
    rank, why = choose_rank(name, key, value, s, m, n, multiple)
    if rank is None:
        log.skip(name, why)
        return None
    new, energy = factor(module, plan, rank, svd)
    return Candidate(name, module, new, rank, energy)


def apply_lowrank(model: nn.Module, config: LowRank, ctx: StepContext) -> StepLog:
    """Factor the selected Linear / Conv2d layers of ``model`` in place (see `LowRank`).

    Every factored layer is timed against its dense form in onnxruntime at ``ctx.target``'s batch size and
    threads and rolled back unless it passes ``config.objective``. Returns a `StepLog` whose details hold
    ``layers`` (one row per factored layer: decision, why, rank, params before / after, dense_ms, new_ms,
    energy), the rank multiple and the timing setting. Subclasses with their own forward, grouped convs and
    layers no rank makes smaller are skipped with the reason. Raises BadInputError for a rank that is 0,
    above a layer's full rank or at / above its break-even (naming the layer).
    """
    log = StepLog("lowrank", config.to_dict())
    found, skipped = targets(model, ctx.select, (nn.Linear, nn.Conv2d), step="lowrank",
                             replaced_by="a factored form")
    log.skipped.extend(skipped)
    multiple = rank_multiple(config.round_to)
    candidates = []
    for t in found:
        c = _propose(t.name, t.module, config, multiple, log)
        if c is not None:
            candidates.append(c)
    rows = judge_and_swap(model, candidates, ctx, log, objective=config.objective, margin=config.margin,
                          runs=config.runs)  # fmt: skip
    log.details.update(summary(rows, multiple, ctx))
    return log


def summary(rows: list[dict], multiple: int, ctx: StepContext) -> dict:
    """The step's details: the per-layer rows, counts, parameter totals and the timing setting."""
    kept = [r for r in rows if r["decision"] == "kept"]
    return {
        "layers": rows,
        "layers_factored": len(kept),
        "layers_rolled_back": len(rows) - len(kept),
        "params_before": sum(r["params_before"] for r in rows),
        "params_after": sum(r["params_after"] if r["decision"] == "kept" else r["params_before"] for r in rows),
        "rank_multiple": multiple,
        # layers are timed in onnxruntime whatever the target runtime ("auto" chooses among runtimes later)
        "timed_in": {"runtime": "onnxruntime", "batch_size": ctx.target.batch_size, "threads": ctx.target.threads},
    }
