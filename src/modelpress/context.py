"""What a step handler receives and returns. Shared by every technique and by the pipeline.

A step handler has the signature ``apply(model, config, ctx) -> StepLog``: it changes ``model`` in place
(module swaps included) and reports what it did. A module it cannot handle is skipped and listed in
``StepLog.skipped`` — never a crash (DESIGN §1.4).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelpress.select import Selector
    from modelpress.tasks.task import Task

__all__ = ["Skipped", "StepContext", "StepLog"]


@dataclass(frozen=True)
class Skipped:
    """A module a step left alone, and why (e.g. ``{"module": "layer3.0.conv1", "why": "..."}``)."""

    module: str
    why: str


@dataclass
class StepLog:
    """What one step did: its name, its config as a dict, skipped modules, and free-form details
    (e.g. per-layer kept fractions, the chosen ONNX quantization format) that go into report.json."""

    name: str
    config: dict[str, Any]
    skipped: list[Skipped] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "config": self.config,
            "skipped": [{"module": s.module, "why": s.why} for s in self.skipped],
            "details": self.details,
        }


@dataclass(frozen=True)
class StepContext:
    """What a handler may use: the task (data, metric, loss; None for a bare ``compress_`` call), the
    module selector (None = every module the step supports), whether to show progress bars, a seed."""

    task: Task | None = None
    select: Selector | None = None
    progress: bool = True
    seed: int = 0

    def require_task(self, step: str) -> Task:
        """The task, or a clear error saying the step needs one."""
        from modelpress.errors import BadInputError

        if self.task is None:
            raise BadInputError(
                f"step `{step}` needs data: pass `task=` (e.g. mp.tasks.get('mnist-5k')) to compress_/run."
            )
        return self.task
