"""What measurement and training need to know about a job: the `Task` and its data `Split`s.

A model is called as ``model(*inputs)``; for every built-in task it returns logits of shape
``(batch, num_classes)``. Runtimes other than torch (onnxruntime) are wrapped as a *predict* function
``predict(inputs: tuple[Tensor, ...]) -> Tensor`` so that one metric works for both.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from modelpress.errors import BadInputError

__all__ = ["Metric", "Predict", "Split", "Task"]

Predict = Callable[[tuple[Tensor, ...]], Tensor]


@dataclass(frozen=True)
class Split:
    """One split of a data set, held in memory.

    ``inputs``: the model's positional inputs, each of shape ``(n, ...)``;
    ``targets``: shape ``(n,)`` (class indices, int64) or ``(n, ...)`` for other tasks.
    """

    inputs: tuple[Tensor, ...]
    targets: Tensor
    name: str = "split"

    def __post_init__(self) -> None:
        n = len(self.targets)
        if n == 0:
            raise BadInputError(f"split `{self.name}` is empty. Fix: give it at least one example.")
        bad = [tuple(t.shape) for t in self.inputs if len(t) != n]
        if bad:
            raise BadInputError(
                f"inputs of split `{self.name}` must have {n} rows like its targets; got shapes {bad}."
            )

    def __len__(self) -> int:
        return len(self.targets)

    def batches(
        self, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None
    ) -> Iterator[tuple[tuple[Tensor, ...], Tensor]]:
        """Yield ``(inputs, targets)`` mini-batches; the last one may be smaller."""
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            yield tuple(t[idx] for t in self.inputs), self.targets[idx]

    def head(self, n: int) -> Split:
        """The first ``n`` examples (all when fewer)."""
        return Split(tuple(t[:n] for t in self.inputs), self.targets[:n], self.name)


@dataclass(frozen=True)
class Metric:
    """A task metric computed from a predict function on a split. Higher is better unless stated."""

    name: str
    fn: Callable[[Predict, Split], float]
    higher_is_better: bool = True

    def __call__(self, predict: Predict, split: Split) -> float:
        return float(self.fn(predict, split))

    def on_outputs(self, outputs: Tensor, split: Split) -> float:
        """The metric of ``outputs`` already computed for every example of ``split``, in order
        (``(len(split), ...)``), for callers that need the outputs too. The metric's predict calls are
        answered with the next rows, so it may feed the split in batches of any size."""
        if len(outputs) != len(split):
            raise ValueError(f"{len(outputs)} output rows for a split of {len(split)} examples")
        cursor = 0

        def replay(inputs: tuple[Tensor, ...]) -> Tensor:
            nonlocal cursor
            n = len(inputs[0])
            rows = outputs[cursor : cursor + n]
            cursor = (cursor + n) % len(outputs)
            return rows

        return self(replay, split)


@dataclass(frozen=True)
class Task:
    """Everything measurement, fine-tuning and distillation need.

    - ``model``: ``model(name=None) -> nn.Module`` returns the *trained* baseline (``name`` picks one of
      ``model_names``; None gives ``default_model``). It trains on first use and caches the weights.
    - ``train`` / ``calibration`` / ``test``: data; ``test`` is held out and is the only split metrics use.
    - ``metric``: the task's metric on a predict function and a split.
    - ``loss``: ``loss(outputs, targets) -> scalar Tensor``, for fine-tuning.
    - ``example_inputs``: a batch of 1 for tracing, export, MAC counting and latency.
    - ``extra_metrics``: more metrics in torch only, ``fn(model) -> float`` (e.g. embedding cosine to a
      reference model).
    - ``augment``: the task's label-preserving training augmentation, ``augment(train) -> Split`` (a
      larger split: the examples plus transformed copies), or None when it has none. Training steps use it
      only when asked (their ``augment: true``), through :meth:`augmented`; metrics never see it.
    """

    name: str
    description: str
    train: Split
    calibration: Split
    test: Split
    metric: Metric
    loss: Callable[[Tensor, Tensor], Tensor]
    model: Callable[..., nn.Module]
    default_model: str
    model_names: tuple[str, ...] = ()
    batch_size: int = 64
    extra_metrics: dict[str, Callable[[nn.Module], float]] = field(default_factory=dict)
    augment: Callable[[Split], Split] | None = None

    def augmented(self) -> Task:
        """This task with ``train`` replaced by ``augment(train)`` (and no further augmentation); the task
        itself when it has no ``augment``. A new split each call (no memory held between steps)."""
        if self.augment is None:
            return self
        return dataclasses.replace(self, train=self.augment(self.train), augment=None)

    @property
    def example_inputs(self) -> tuple[Tensor, ...]:
        return tuple(t[:1] for t in self.test.inputs)
