"""The `Prune` step handler: weight (masked) or structured (removed) pruning, one-shot or scheduled."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from modelpress.artifact.baking import unparametrize
from modelpress.context import Skipped, StepContext, StepLog
from modelpress.errors import BadInputError
from modelpress.pruning.config import Prune
from modelpress.pruning.masks import (
    WeightMask,
    get_mask,
    global_magnitude_masks,
    magnitude_mask,
    set_mask,
    zhu_gupta_sparsity,
)
from modelpress.pruning.structured import apply_plan, plan_structured
from modelpress.select import targets, tied_weights
from modelpress.source import get_source
from modelpress.tasks.models import example_inputs

__all__ = ["apply_prune", "example_inputs_for", "prune_weights", "weight_targets"]

_WEIGHT_TYPES = (nn.Linear, nn.modules.conv._ConvNd)


def weight_targets(model: nn.Module, ctx: StepContext) -> tuple[list[tuple[str, nn.Module]], list[Skipped]]:
    """Modules whose ``weight`` the weight pruner masks, by `modelpress.select.targets`: Linear and Conv
    layers, subclasses included (a mask changes the weight in place, so a custom forward is kept), and
    Embedding when ``ctx.select`` picks one; and the selected modules it had to skip, with the reason.
    A weight tied to another target's (one tensor, two modules) is pruned once, as the first one's."""
    accepts = _WEIGHT_TYPES + ((nn.Embedding,) if ctx.select is not None else ())
    found, skipped = targets(model, ctx.select, accepts, step="weight pruning")
    if ctx.select is None:
        skipped = [Skipped(s.module, "embedding not pruned unless selected (select: {types: [embedding]})")
                   if isinstance(model.get_submodule(s.module if s.module != "(root)" else ""), nn.Embedding)
                   else s for s in skipped]
    tied = tied_weights(model)
    chosen: list[tuple[str, nn.Module]] = []
    for t in found:
        if parametrize.is_parametrized(t.module, "weight") and get_mask(t.module) is None:
            skipped.append(Skipped(t.name, "its weight has another parametrization (e.g. quantization)"))
        elif not any(o in tied.get(t.name, ()) for o, _ in chosen):
            chosen.append((t.name, t.module))
    return chosen, skipped


def _tied_partners(model: nn.Module, targets_: list[tuple[str, nn.Module]]) -> dict[str, list[nn.Module]]:
    """Per target, the other modules that use the same weight tensor (they get the same mask, so every
    user of the tensor sees the pruned weight and the model stays tied)."""
    tied = tied_weights(model)
    return {n: [model.get_submodule(o) for o in tied[n]] for n, _ in targets_ if n in tied}


def _sync_tied(partners: dict[str, list[nn.Module]], targets_: list[tuple[str, nn.Module]]) -> None:
    for n, m in targets_:
        for other in partners.get(n, ()):
            set_mask(other, get_mask(m).mask)


@torch.no_grad()
def prune_weights(targets: list[tuple[str, nn.Module]], config: Prune,
                  schedule: Callable[[float], float] = lambda s: s) -> dict[str, float]:  # fmt: skip
    """Mask the smallest-magnitude weights of ``targets`` (in place) to ``schedule(s)`` of each layer's
    final sparsity ``s`` (``config.sparsity_for(name)``); scope "global" ranks all layers without a
    ``per_layer`` override together. Returns the sparsity reached per layer."""
    own = {n: m for n, m in targets if config.override_for(n) is not None}
    shared = [(n, m) for n, m in targets if n not in own]
    masks: dict[str, Tensor] = {}
    if config.scope == "global" and shared:
        masks.update(global_magnitude_masks({n: m.weight for n, m in shared}, schedule(config.sparsity)))
    else:
        own.update(dict(shared))
    for n, m in own.items():
        masks[n] = magnitude_mask(m.weight, schedule(config.sparsity_for(n)))
    reached = {}
    for n, m in targets:
        set_mask(m, masks[n])
        reached[n] = 1.0 - float(masks[n].sum()) / masks[n].numel()
    return reached


def _geometric(fraction: float) -> Callable[[float], float]:
    # Iterative rounds remove the same share of the remaining weights each time (Han et al. 2015).
    return lambda s: 1.0 - (1.0 - s) ** fraction


def _train(model: nn.Module, config: Prune, ctx: StepContext, log: StepLog, on_step=None) -> list[float]:
    from modelpress.tasks.train import train, training_task

    task, note = training_task(ctx.require_task(f"prune (schedule {config.schedule})"), config.augment)
    if note:
        log.details["augment"] = note
    return train(model, task.train, task.loss, epochs=config.epochs, lr=config.lr, batch_size=task.batch_size,
                 seed=ctx.seed, progress=ctx.progress, on_step=on_step)  # fmt: skip


def _weight(model: nn.Module, config: Prune, ctx: StepContext, log: StepLog) -> None:
    targets_, skipped = weight_targets(model, ctx)
    log.skipped.extend(skipped)
    if not targets_:
        log.details["note"] = "no Linear / Conv layer selected; nothing pruned"
        log.details["changed"] = False
        return
    partners = _tied_partners(model, targets_)
    if partners:
        log.details["tied"] = {n: [o for o in tied_weights(model)[n]] for n in partners}

    def prune(schedule: Callable[[float], float] = lambda s: s) -> dict[str, float]:
        reached = prune_weights(targets_, config, schedule)
        _sync_tied(partners, targets_)
        return reached

    events: list[list[float]] = []
    if config.schedule == "oneshot":
        reached = prune()
    elif config.schedule == "iterative":
        for k in range(1, config.steps + 1):
            reached = prune(_geometric(k / config.steps))
            events.append([k, round(sum(reached.values()) / len(reached), 6)])
            log.details.setdefault("round_losses", []).append(_train(model, config, ctx, log)[-1])
    else:  # gradual: Zhu & Gupta over the first `ramp` of the training steps
        state = {"every": 1}

        def on_step(step: int, total: int) -> None:
            every = max(1, int(config.ramp * total) // config.steps)
            state["every"] = every
            if step % every == 0 and step // every <= config.steps:
                frac = zhu_gupta_sparsity(step, 1.0, n=config.steps, every=every)
                prune(lambda s: s * frac)
                events.append([step, round(config.sparsity * frac, 6)])

        _train(model, config, ctx, log, on_step)
        reached = prune()  # no-op when the schedule reached s_f; else completes it
        log.details["every_steps"] = state["every"]
    log.details["pruning_events"] = events
    total = sum(m.weight.numel() for _, m in targets_)
    zeros = sum(int((~get_mask(m).mask).sum()) for _, m in targets_)
    log.details["sparsity"] = round(zeros / total, 6)
    log.details["layers"] = {
        n: {"params": m.weight.numel(), "kept": round(1.0 - reached[n], 6)} for n, m in targets_
    }
    if zeros == 0:
        log.details["changed"] = False
        log.details["note"] = f"sparsity {config.sparsity} removes no weight of the selected layers"


def example_inputs_for(model: nn.Module, ctx: StepContext) -> tuple[Tensor, ...]:
    """A batch to trace ``model`` with: the task's example inputs, else what the model's recorded source
    gives (`modelpress.tasks.models.example_inputs`). Raises BadInputError when neither says."""
    if ctx.task is not None:
        return ctx.task.example_inputs
    inputs = example_inputs(get_source(model))
    if inputs is None:
        raise BadInputError("structured pruning traces the model and needs example inputs: pass `task=` "
                            "(e.g. mp.tasks.get('mnist-5k')) to compress_/run.")  # fmt: skip
    return inputs


def _fold_masks(model: nn.Module) -> int:
    """Fold weight masks of earlier weight pruning into plain weights (tp slices plain parameters)."""
    n = 0
    for m in model.modules():
        if parametrize.is_parametrized(m, "weight") and all(
            isinstance(p, WeightMask) for p in m.parametrizations["weight"]
        ):
            unparametrize(m, "weight")  # a copy of the model (e.g. a rollback backup) keeps its mask
            n += 1
    return n


def _structured(model: nn.Module, config: Prune, ctx: StepContext, log: StepLog) -> None:
    folded = _fold_masks(model)
    if folded:
        log.details["folded_weight_masks"] = folded
    inputs = example_inputs_for(model, ctx)
    params_before = sum(p.numel() for p in model.parameters())
    rounds = config.steps if config.schedule == "iterative" else 1
    original: dict[str, int] = {}
    kept: dict[str, dict] = {}
    for k in range(1, rounds + 1):
        # Round k removes what takes every layer from the previous round's share to 1-(1-s)^(k/rounds).
        prev, now = _geometric((k - 1) / rounds), _geometric(k / rounds)
        step_cfg = dataclasses.replace(
            config,
            sparsity=1 - (1 - now(config.sparsity)) / (1 - prev(config.sparsity)),
            per_layer=tuple((p, 1 - (1 - now(s)) / (1 - prev(s))) for p, s in config.per_layer or ()) or None,
            ffn=config.ffn if isinstance(config.ffn, bool) else 1 - (1 - now(config.ffn)) / (1 - prev(config.ffn)),
        )  # fmt: skip
        plan = plan_structured(model, step_cfg, inputs, select=ctx.select, task=ctx.task)
        apply_plan(plan)
        for name, row in plan.kept().items():
            original.setdefault(name, row["before"])
            kept[name] = {"kind": row["kind"], "before": original[name], "after": row["after"]}
        log.skipped.extend(s for s in plan.skipped if s not in log.skipped)
        if plan.notes:
            log.details.setdefault("notes", []).extend(plan.notes)
        if config.schedule == "iterative":
            log.details.setdefault("round_losses", []).append(_train(model, config, ctx, log)[-1])
    model.eval()
    with torch.no_grad():
        model(*inputs)  # fail here, with the step named, rather than later in measuring
    log.details["units"] = kept
    log.details["params_before"] = params_before
    log.details["params_after"] = sum(p.numel() for p in model.parameters())
    if all(row["after"] == row["before"] for row in kept.values()):
        log.details["changed"] = False
        log.details["note"] = (f"{config.structure} pruning removed nothing: " + (
            f"sparsity {config.sparsity} rounds to zero units in each of {len(kept)} layer(s)" if kept else
            "no prunable unit (every group reaches the outputs or a skipped module)"))


def apply_prune(model: nn.Module, config: Prune, ctx: StepContext) -> StepLog:
    """Prune ``model`` in place as ``config`` says; return what was done.

    ``details``: for ``weight`` — overall ``sparsity`` reached, ``layers`` {name: {params, kept}},
    ``pruning_events``; for structured — ``units`` {root name: {kind, before, after}} and
    ``params_before`` / ``params_after``. ``skipped`` lists modules left alone and why.
    Raises BadInputError when a schedule or criterion needs a task and ``ctx.task`` is None.
    """
    if not isinstance(config, Prune):
        raise BadInputError(f"`config` of `apply_prune` must be a Prune; got {type(config).__name__}.")
    log = StepLog("prune", dataclasses.asdict(config))
    was_training = model.training
    if config.structure == "weight":
        _weight(model, config, ctx, log)
    else:
        _structured(model, config, ctx, log)
    model.train(was_training)
    return log
