"""The `Prune` step's configuration (recipe key ``prune``)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modelpress.errors import bad_value, is_fraction, is_int, is_number

__all__ = ["CRITERIA", "SCHEDULES", "SCOPES", "STRUCTURES", "Prune"]

STRUCTURES = ("weight", "neuron", "channel", "head")
SCOPES = ("layer", "global")
CRITERIA = ("l1", "l2", "bn_scale", "taylor")
SCHEDULES = ("oneshot", "iterative", "gradual")
ROUND_TO = (1, 2, 4, 8, 16, 32, 64)


@dataclass(frozen=True)
class Prune:
    """Remove weights (masked, stored packed) or whole neurons / channels / heads (physically removed).

    - ``structure``: ``"weight"`` — unstructured magnitude pruning; the zeros are kept by a mask
      parametrization through later fine-tuning and stored packed by the artifact.
      ``"neuron"`` — output neurons of ``nn.Linear`` layers; ``"channel"`` — output channels of
      ``nn.Conv2d`` layers (BatchNorm, residual additions and concatenations kept consistent);
      ``"head"`` — attention heads of BERT-style self-attention, plus FFN neurons (see ``ffn``).
      The structured kinds give a smaller dense model. The model's outputs (classifier) are never pruned.
    - ``sparsity``: the fraction removed, in [0, 1): of the weights (``weight``) or of the
      neurons / channels / heads (structured). Never a count.
    - ``scope``: ``"layer"`` — every layer (group of coupled channels) loses the same fraction;
      ``"global"`` — one threshold over all selected layers (scores normalised per layer for structured).
    - ``criterion``: ``"l1"`` / ``"l2"`` norm (for ``weight`` both mean |w|), ``"bn_scale"`` (|γ| of the
      BatchNorm in the group; L1 where a group has none), ``"taylor"`` (first order |w·∂L/∂w|, from a few
      training batches of the task). ``bn_scale`` and ``taylor`` are for structured pruning only.
    - ``schedule``: ``"oneshot"``; ``"iterative"`` — ``steps`` rounds of prune → fine-tune ``epochs``
      with ``lr``; ``"gradual"`` (weight only) — train ``epochs`` while ``steps`` pruning events raise the
      sparsity by Zhu & Gupta's cubic schedule ``s_t = s_f (1 − (1 − t/(nΔt))³)`` over the first
      ``ramp`` fraction of the training steps. iterative / gradual need a task (its train split and loss).
    - ``augment``: the training of ``iterative`` / ``gradual`` uses the task's augmented training split
      (``Task.augment``, as `FineTune`'s ``augment``); a task without one trains on its split as it is.
    - ``per_layer``: ``{name_regex: sparsity}`` (or pairs) overriding ``sparsity`` for the layers whose
      qualified name fully matches (first match wins); stored as a tuple of pairs.
    - ``round_to``: keep a multiple of this many channels / neurons per layer (a power of two up to 64;
      structured only). CPU kernels process channels in SIMD blocks (oneDNN and onnxruntime use 16 fp32
      lanes with AVX-512, 8 with AVX2), so a kept count off that block wastes the remainder.
    - ``ffn``: for ``head``: prune the FFN neurons too — ``True`` at ``sparsity``, a float at that
      fraction, ``False`` not at all.

    Raises BadInputError (via ``bad_value``) for any value outside these ranges.
    """

    structure: str = "weight"
    sparsity: float = 0.5
    scope: str = "layer"
    criterion: str = "l1"
    schedule: str = "oneshot"
    steps: int = 5
    epochs: int = 1
    lr: float = 1e-3
    ramp: float = 0.75
    per_layer: Any = None
    round_to: int = 1
    ffn: bool | float = True
    augment: bool = False

    def __post_init__(self) -> None:
        own = "Prune"
        if self.structure not in STRUCTURES:
            raise bad_value("structure", own, f"one of {list(STRUCTURES)}", self.structure)
        if not is_fraction(self.sparsity):
            raise bad_value(
                "sparsity", own, "a fraction in [0, 1) (the share removed)", self.sparsity,
                "e.g. 0.9 removes 90% of the weights; it is never a count.",
            )  # fmt: skip
        if self.scope not in SCOPES:
            raise bad_value("scope", own, f"one of {list(SCOPES)}", self.scope)
        if self.criterion not in CRITERIA:
            raise bad_value("criterion", own, f"one of {list(CRITERIA)}", self.criterion)
        if self.structure == "weight" and self.criterion not in ("l1", "l2"):
            raise bad_value(
                "criterion", own, "'l1' or 'l2' (magnitude) for structure 'weight'", self.criterion,
                "bn_scale and taylor rank whole channels: use structure 'channel' / 'neuron' / 'head'.",
            )  # fmt: skip
        if self.schedule not in SCHEDULES:
            raise bad_value("schedule", own, f"one of {list(SCHEDULES)}", self.schedule)
        if self.schedule == "gradual" and self.structure != "weight":
            raise bad_value(
                "schedule", own, "'oneshot' or 'iterative' for structured pruning", self.schedule,
                "gradual pruning changes masks during training; removing channels mid-training would "
                "reset the optimizer. Use schedule: iterative.",
            )  # fmt: skip
        if not is_int(self.steps, 1):
            raise bad_value("steps", own, "an int >= 1", self.steps)
        if not is_int(self.epochs, 1):
            raise bad_value("epochs", own, "an int >= 1", self.epochs)
        if not is_number(self.lr) or not 0 < self.lr < 10:
            raise bad_value("lr", own, "a float in (0, 10)", self.lr, "a typical value is 1e-3.")
        if not is_number(self.ramp) or not 0 < self.ramp <= 1:
            raise bad_value("ramp", own, "a fraction in (0, 1]", self.ramp)
        if type(self.round_to) is not int or self.round_to not in ROUND_TO:
            raise bad_value(
                "round_to", own, f"one of {list(ROUND_TO)}", self.round_to,
                "8 or 16 match the SIMD width of CPU conv kernels (16 fp32 lanes with AVX-512).",
            )  # fmt: skip
        if not isinstance(self.ffn, bool) and not is_fraction(self.ffn):
            raise bad_value("ffn", own, "true, false or a fraction in [0, 1)", self.ffn)
        if not isinstance(self.augment, bool):
            raise bad_value("augment", own, "true or false", self.augment)
        object.__setattr__(self, "per_layer", self._pairs(self.per_layer))

    @staticmethod
    def _pairs(per_layer: Any) -> tuple[tuple[str, float], ...] | None:
        if per_layer is None:
            return None
        if isinstance(per_layer, Mapping):
            items = list(per_layer.items())
        elif isinstance(per_layer, (list, tuple)) and all(
            isinstance(p, (list, tuple)) and len(p) == 2 for p in per_layer
        ):
            items = [tuple(p) for p in per_layer]
        else:
            raise bad_value("per_layer", "Prune", "a mapping {name_regex: sparsity} or a list of pairs", per_layer)
        out = []
        for pattern, s in items:
            if not isinstance(pattern, str):
                raise bad_value("per_layer", "Prune", "keys that are regular expressions", pattern)
            try:
                re.compile(pattern)
            except re.error as e:
                raise bad_value("per_layer", "Prune", f"valid regular expressions ({e})", pattern) from e
            if not is_fraction(s):
                raise bad_value(f"per_layer[{pattern!r}]", "Prune", "a fraction in [0, 1)", s)
            out.append((pattern, float(s)))
        return tuple(out)

    def override_for(self, name: str) -> float | None:
        """The first ``per_layer`` sparsity whose pattern fully matches ``name``, or None."""
        for pattern, s in self.per_layer or ():
            if re.fullmatch(pattern, name):
                return s
        return None

    def sparsity_for(self, name: str, default: float | None = None) -> float:
        """The sparsity for the layer called ``name``: its ``per_layer`` override, else ``default``
        (``sparsity`` when None)."""
        s = self.override_for(name)
        if s is not None:
            return s
        return float(self.sparsity if default is None else default)

    @property
    def ffn_sparsity(self) -> float:
        """The FFN-neuron fraction removed with ``structure="head"`` (0 when ``ffn`` is False)."""
        if self.ffn is True:
            return float(self.sparsity)
        if self.ffn is False:
            return 0.0
        return float(self.ffn)
