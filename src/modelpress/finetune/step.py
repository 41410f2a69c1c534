"""The `FineTune` step handler: on labels, or (``distill: true``) against the recipe's input model."""

from __future__ import annotations

from dataclasses import asdict

from torch import nn

from modelpress.context import StepContext, StepLog
from modelpress.errors import BadInputError
from modelpress.finetune.config import FineTune
from modelpress.tasks.train import train, training_task

__all__ = ["apply_finetune"]


def _details(note: str | None, **details: object) -> dict:
    return {**details, **({"augment": note} if note else {})}


def _distill(model: nn.Module, config: FineTune, ctx: StepContext) -> StepLog:
    from modelpress.distillation import Distill, train_student

    task, note = training_task(ctx.require_task("finetune"), config.augment)
    if ctx.reference is None:
        raise BadInputError("`distill` of `FineTune` learns from the model the recipe started from, and none was "
                            "given. Fix: run the step in a recipe (mp.run), or pass reference=teacher to "
                            "compress_.")  # fmt: skip
    kd = Distill(alpha=config.alpha, temperature=config.temperature, epochs=config.epochs, lr=config.lr,
                 batch_size=config.batch_size, optimizer=config.optimizer, weight_decay=config.weight_decay,
                 schedule=config.schedule)  # fmt: skip
    result = train_student(model, ctx.reference, task, kd, seed=ctx.seed, progress=ctx.progress)
    return StepLog("finetune", asdict(config), details=_details(
        note, epoch_losses=[round(x, 6) for x in result.epoch_losses], teacher_outputs=result.teacher_outputs))


def apply_finetune(model: nn.Module, config: FineTune, ctx: StepContext) -> StepLog:
    """Fine-tune ``model`` in place on ``ctx.task.train`` (``config.augment``: on its augmentation,
    `modelpress.tasks.train.training_task`); log the mean loss of each epoch.

    With ``config.distill`` the loss mixes the labels with ``ctx.reference``'s soft targets (the
    distillation loss of `modelpress.distillation`); raises BadInputError when there is no reference.
    """
    if config.distill:
        return _distill(model, config, ctx)
    task, note = training_task(ctx.require_task("finetune"), config.augment)
    losses = train(  # restores the model's train / eval mode itself
        model,
        task.train,
        task.loss,
        epochs=config.epochs,
        lr=config.lr,
        batch_size=config.batch_size or task.batch_size,
        optimizer=config.optimizer,
        weight_decay=config.weight_decay,
        schedule=config.schedule,
        seed=ctx.seed,
        progress=ctx.progress,
    )
    return StepLog("finetune", asdict(config), details=_details(note, epoch_losses=[round(x, 6) for x in losses]))
