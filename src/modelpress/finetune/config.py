"""The `FineTune` step's configuration."""

from __future__ import annotations

from dataclasses import dataclass

from modelpress.distillation.config import check_kd_weights
from modelpress.errors import bad_value
from modelpress.tasks.train import check_training_config

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
    - ``augment``: train on the task's augmented training split (``Task.augment``; MNIST-5k: the split plus
      its 1-pixel shifts, 9× the examples, as its LeNet-300-100 baseline was trained) instead of the split
      as it is. On a small training set (MNIST-5k's 4,000 images) recovery without it re-fits the same
      examples and loses held-out accuracy. A task without an augmentation trains as usual; the log's
      ``augment`` entry says what was used either way. Off by default.

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
    augment: bool = False

    def __post_init__(self) -> None:
        check_training_config("FineTune", self.epochs, self.lr, self.batch_size, self.optimizer,
                              self.weight_decay, self.schedule)
        if not isinstance(self.distill, bool):
            raise bad_value("distill", "FineTune", "true or false", self.distill)
        if not isinstance(self.augment, bool):
            raise bad_value("augment", "FineTune", "true or false", self.augment)
        check_kd_weights("FineTune", self.alpha, self.temperature)
