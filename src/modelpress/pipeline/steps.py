"""The one dispatch table: recipe key → step config class, handler and optional deploy hook.

Explicit on purpose (no import-time registry): adding a technique means adding one row here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from modelpress.context import StepContext, StepLog
from modelpress.decomposition.config import Decompose
from modelpress.decomposition.step import apply_decompose
from modelpress.distillation import Distill, apply_distill
from modelpress.finetune import FineTune, apply_finetune
from modelpress.lowrank.config import LowRank
from modelpress.lowrank.step import apply_lowrank
from modelpress.pruning.config import Prune
from modelpress.pruning.step import apply_prune
from modelpress.quantization.config import Quantize
from modelpress.quantization.step import apply_quantize, deploy_quantize

__all__ = ["STEPS", "StepConfig", "StepKind", "kind_of"]

StepConfig = Any  # one of the frozen config dataclasses in the table below
Handler = Callable[[nn.Module, Any, StepContext], StepLog]
DeployHook = Callable[[Path, nn.Module, Any, StepContext], dict]


@dataclass(frozen=True)
class StepKind:
    """A step type: its recipe key, config class, handler, and deploy hook (rewrites the exported ONNX)."""

    key: str
    config: type
    apply: Handler
    deploy: DeployHook | None = None


def _table() -> dict[str, StepKind]:
    rows = [
        StepKind("distill", Distill, apply_distill),
        StepKind("finetune", FineTune, apply_finetune),
        StepKind("lowrank", LowRank, apply_lowrank),
        StepKind("decompose", Decompose, apply_decompose),
        StepKind("prune", Prune, apply_prune),
        StepKind("quantize", Quantize, apply_quantize, deploy_quantize),
    ]
    return {r.key: r for r in rows}


STEPS: dict[str, StepKind] = _table()


def kind_of(config: StepConfig) -> StepKind:
    """The table row for a config instance."""
    for kind in STEPS.values():
        if type(config) is kind.config:
            return kind
    from modelpress.errors import BadInputError

    raise BadInputError(
        f"`step` must be one of the step configs {[k.config.__name__ for k in STEPS.values()]}; "
        f"got {type(config).__name__}."
    )
