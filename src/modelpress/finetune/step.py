"""The `FineTune` step handler."""

from __future__ import annotations

from dataclasses import asdict

from torch import nn

from modelpress.context import StepContext, StepLog
from modelpress.finetune.config import FineTune
from modelpress.tasks.train import train

__all__ = ["apply_finetune"]


def apply_finetune(model: nn.Module, config: FineTune, ctx: StepContext) -> StepLog:
    """Fine-tune ``model`` in place on ``ctx.task.train``; log the mean loss of each epoch."""
    task = ctx.require_task("finetune")
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
    return StepLog("finetune", asdict(config), details={"epoch_losses": [round(x, 6) for x in losses]})
