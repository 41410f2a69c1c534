"""The `FineTune` step's configuration."""

from __future__ import annotations

from dataclasses import dataclass

from modelpress.distillation.config import check_kd_weights
from modelpress.errors import bad_value, is_int, is_number
from modelpress.tasks.train import OPTIMIZERS, SCHEDULES

__all__ = ["FineTune"]


@dataclass(frozen=True)
class FineTune:
    """Train the (compressed) model on the task's training split with the task's loss.

    - ``epochs``: full passes over the training split (≥ 1).
    - ``lr``: learning rate (> 0).
    - ``batch_size``: examples per step; None takes the task's default.
    - ``optimizer``: ``"adam"``, ``"adamw"`` or ``"sgd"`` (momentum 0.9).
    - ``weight_decay``: L2 penalty (≥ 0; decoupled for adamw).
    - ``schedule``: learning rate ``"constant"``, or ``"cosine"`` (decays to 0 over all steps; recovers
      more after structured pruning).

    - ``distill``: learn from the model the recipe started from (the reference) instead of labels alone —
      recovery by knowledge distillation; ``alpha`` (in [0, 1], the weight of the reference's soft
      targets) and ``temperature`` (T) as in `Distill`. Read only when ``distill`` is true.

    Pruning masks and quantization constraints that earlier steps left on the model hold during training.
    """

    epochs: int = 1
    lr: float = 1e-3
    batch_size: int | None = None
    optimizer: str = "adam"
    weight_decay: float = 0.0
    schedule: str = "constant"
    distill: bool = False
    alpha: float = 0.5
    temperature: float = 4.0

    def __post_init__(self) -> None:
        if not is_int(self.epochs, 1):
            raise bad_value("epochs", "FineTune", "an int ≥ 1", self.epochs)
        if not is_number(self.lr) or not 0 < self.lr < 10:
            raise bad_value("lr", "FineTune", "a float in (0, 10)", self.lr, "a typical value is 1e-3.")
        if self.batch_size is not None and not is_int(self.batch_size, 1):
            raise bad_value("batch_size", "FineTune", "an int ≥ 1 or null", self.batch_size)
        if self.optimizer not in OPTIMIZERS:
            raise bad_value("optimizer", "FineTune", f"one of {list(OPTIMIZERS)}", self.optimizer)
        if not is_number(self.weight_decay) or self.weight_decay < 0:
            raise bad_value("weight_decay", "FineTune", "a float ≥ 0", self.weight_decay)
        if self.schedule not in SCHEDULES:
            raise bad_value("schedule", "FineTune", f"one of {list(SCHEDULES)}", self.schedule)
        if not isinstance(self.distill, bool):
            raise bad_value("distill", "FineTune", "true or false", self.distill)
        check_kd_weights("FineTune", self.alpha, self.temperature)
