"""What a step handler receives and returns. Shared by every technique and by the pipeline.

A step handler has the signature ``apply(model, config, ctx) -> StepLog``: it changes ``model`` in place
(module swaps included) and reports what it did. A module it cannot handle is skipped and listed in
``StepLog.skipped`` — never a crash (architecture §1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

    from modelpress.measure.stats import Stats
    from modelpress.select import Selector
    from modelpress.tasks.task import Task

__all__ = ["DeployTarget", "Skipped", "StepContext", "StepLog", "Swapped"]


@dataclass(frozen=True)
class Skipped:
    """A module a step left alone, and why (e.g. ``{"module": "layer3.0.conv1", "why": "..."}``)."""

    module: str
    why: str


@dataclass(frozen=True)
class Swapped:
    """A module a step replaced: its qualified name, the class it had and the class it has now."""

    module: str
    from_type: str
    to_type: str


@dataclass(frozen=True)
class DeployTarget:
    """Where the model will run: the runtime (``auto`` lets the deploy step measure and choose), the
    examples per call and the intra-op threads. Steps that decide by timing (a factored layer against its
    dense form, a deployment format) time in this setting."""

    runtime: str = "auto"
    batch_size: int = 1
    threads: int = 1


@dataclass
class StepLog:
    """What one step did: its name, its config as a dict, skipped modules, and free-form details
    (e.g. per-layer kept fractions, the chosen ONNX quantization format) that go into report.json."""

    name: str
    config: dict[str, Any]
    skipped: list[Skipped] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    swapped: list[Swapped] = field(default_factory=list)
    # A step that builds a new model (a distillation student) returns it here; the pipeline continues
    # with it. None: the step changed the model it was given in place. Not part of the report.
    model: nn.Module | None = field(default=None, repr=False, compare=False)

    def swap(self, module: str, before: object, after: object) -> None:
        """Record that ``module`` (a qualified name) went from ``before`` to ``after`` (modules or types)."""
        from torch.nn.utils import parametrize

        def name(x: object) -> str:
            # a pruned layer's class is a parametrized subclass: report the class it was built as
            t = x if isinstance(x, type) else parametrize.type_before_parametrizations(x)
            return t.__name__
        self.swapped.append(Swapped(module, name(before), name(after)))

    def skip(self, module: str, why: str) -> None:
        """Record that ``module`` was left alone, and why."""
        self.skipped.append(Skipped(module, why))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "config": self.config,
            "swapped": [{"module": s.module, "from": s.from_type, "to": s.to_type} for s in self.swapped],
            "skipped": [{"module": s.module, "why": s.why} for s in self.skipped],
            "details": self.details,
        }


@dataclass(frozen=True)
class StepContext:
    """What a handler may use: the task (data, metric, loss; None for a bare ``compress_`` call), the
    module selector (None = every module the step supports), whether to show progress bars, a seed;
    ``reference``, the model the recipe started from (eval mode, never to be modified: the default
    teacher of distillation and the fp32 model fidelity is measured against; None for a bare
    ``compress_`` call without one); ``baseline``, its measured `Stats` (None when not measured); and
    ``target``, the deployment setting that timing decisions are made in."""

    task: Task | None = None
    select: Selector | None = None
    progress: bool = True
    seed: int = 0
    reference: nn.Module | None = None
    baseline: Stats | None = None
    target: DeployTarget = field(default_factory=DeployTarget)

    def require_task(self, step: str) -> Task:
        """The task, or a clear error saying the step needs one."""
        from modelpress.errors import BadInputError

        if self.task is None:
            raise BadInputError(
                f"step `{step}` needs data: pass `task=` (e.g. mp.tasks.get('mnist-5k')) to compress_/run."
            )
        return self.task
