"""The `Distill` step's configuration."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modelpress.errors import bad_value, is_int, is_number
from modelpress.pruning.config import ROUND_TO
from modelpress.tasks.train import check_training_config

__all__ = ["Augment", "Distill", "check_kd_weights"]


def check_kd_weights(owner: str, alpha: object, temperature: object) -> None:
    """Raise BadInputError unless ``alpha`` is in [0, 1] and ``temperature`` in (0, 100]."""
    if not is_number(alpha) or not 0 <= alpha <= 1:
        raise bad_value("alpha", owner, "a float in [0, 1] (the weight of the teacher's soft targets)", alpha,
                        "0 trains on labels alone, 1 on the teacher alone; 0.5 is a common start.")  # fmt: skip
    if not is_number(temperature) or not 0 < temperature <= 100:
        raise bad_value("temperature", owner, "a float in (0, 100]", temperature,
                        "Hinton et al. used 2-20; 4 is a common start.")  # fmt: skip


@dataclass(frozen=True)
class Augment:
    """Consistent augmented views of the training images for ``Distill.augment`` (`views` module).

    - ``shift``: each image moved by a random integer offset in ``[-shift, shift]`` pixels on each axis
      (0: off; at most 8).
    - ``mixup``: each image mixed with a random partner, weight ``lam ~ Beta(mixup, mixup)`` (Zhang et al.
      2018; 0: off; 1 draws ``lam`` uniformly).
    - ``views``: how many different views are drawn; epoch ``e`` trains on view ``e mod views``; the
      teacher's logits are computed once per view and cached on disk.

    Raises BadInputError for a bad field or when neither augmentation is on.
    """

    shift: int = 2
    mixup: float = 1.0
    views: int = 4

    def __post_init__(self) -> None:
        own = "Distill.augment"
        if not is_int(self.shift, 0) or self.shift > 8:
            raise bad_value("shift", own, "an int in [0, 8] (pixels)", self.shift, "2 suits 28×28 images.")
        if not is_number(self.mixup) or not 0 <= self.mixup <= 100:
            raise bad_value("mixup", own, "a float in [0, 100] (the Beta concentration; 0 is off)", self.mixup)
        if not is_int(self.views, 1) or self.views > 1000:
            raise bad_value("views", own, "an int in [1, 1000]", self.views,
                            "each view costs one teacher pass over the training split, once.")  # fmt: skip
        if self.shift == 0 and self.mixup == 0:
            raise bad_value("augment", "Distill", "a shift > 0 or a mixup > 0", "shift 0, mixup 0",
                            "omit `augment` (null) to train on the images as they are.")  # fmt: skip
        object.__setattr__(self, "mixup", float(self.mixup))


def _augment(augment: Any) -> Augment | None:
    if augment is None or isinstance(augment, Augment):
        return augment
    keys = {"shift", "mixup", "views"}
    if not isinstance(augment, Mapping) or not set(augment) <= keys:
        raise bad_value("augment", "Distill", f"null or a mapping with keys among {sorted(keys)}",
                        augment if not isinstance(augment, Mapping) else sorted(augment),
                        "e.g. {shift: 2, mixup: 1.0, views: 12}.")  # fmt: skip
    return Augment(**augment)


def _student(student: Any) -> str | dict[str, Any] | None:
    """``student`` in canonical form: None, a name, ``{"layers": (ints...)}`` or ``{"width": f[, "round_to": k]}``."""
    if student is None or (isinstance(student, str) and student):
        return student
    fix = "give a model name, {layers: [0, 2, 4]} or {width: 0.5}."
    if not isinstance(student, Mapping):
        raise bad_value("student", "Distill", "null, a model name or a mapping", student, fix)
    keys = set(student)
    if keys == {"layers"}:
        layers = student["layers"]
        ok = isinstance(layers, (list, tuple)) and layers and all(is_int(i, 0) for i in layers)
        if not ok or list(layers) != sorted(set(layers)):
            raise bad_value("student.layers", "Distill", "a non-empty increasing list of layer indices ≥ 0",
                            layers, "e.g. [0, 2, 4] keeps every other layer of a 6-layer transformer.")  # fmt: skip
        return {"layers": tuple(int(i) for i in layers)}
    if "width" in keys and keys <= {"width", "round_to"}:
        width = student["width"]
        if not is_number(width) or not 0 < width < 1:
            raise bad_value("student.width", "Distill", "a fraction in (0, 1) of every hidden width kept", width)
        round_to = student.get("round_to", 1)
        if not is_int(round_to) or round_to not in ROUND_TO:
            raise bad_value("student.round_to", "Distill", f"one of {list(ROUND_TO)}", round_to)
        return {"width": float(width), "round_to": int(round_to)}
    raise bad_value("student", "Distill", "a mapping with the key `layers` or `width` (and `round_to`)",
                    sorted(keys), fix)  # fmt: skip


def _layer_map(layer_map: Any) -> tuple[tuple[str, str], ...] | None:
    if layer_map is None:
        return None
    if isinstance(layer_map, Mapping):
        items = list(layer_map.items())
    elif isinstance(layer_map, (list, tuple)) and all(isinstance(p, (list, tuple)) and len(p) == 2 for p in layer_map):
        items = [tuple(p) for p in layer_map]
    else:
        items = []
    if not items or not all(isinstance(a, str) and isinstance(b, str) for a, b in items):
        raise bad_value("layer_map", "Distill", "a non-empty mapping {student module name: teacher module name}",
                        layer_map, "e.g. {encoder.encoder.layer.0: encoder.encoder.layer.1}; omit it for the "
                        "automatic uniform map of transformer layers.")  # fmt: skip
    return tuple((str(a), str(b)) for a, b in items)


@dataclass(frozen=True)
class Distill:
    """Train a student on the teacher's soft targets (Hinton et al. 2015) and, optionally, its features.

    The loss is ``(1 - alpha) · label loss + alpha · T² · KL(teacher_T ‖ student_T)`` plus
    ``hidden ·`` hidden-state MSE (through learned linear projections where widths differ) plus
    ``attention ·`` attention-map KL (transformers). ``alpha: 0`` with no feature terms is plain label
    training, identical to ``finetune`` with the same seed.

    - ``student``: None — the model being compressed is the student (trained in place); a name — a
      built-in model (fresh, seeded initialization), an artifact / Hugging Face folder or
      ``module:function``; ``{layers: [0, 2, 4]}`` — the teacher's transformer keeping only those layers,
      initialized from the teacher's (DistilBERT); ``{width: 0.5}`` — the teacher with every hidden width
      scaled by 0.5 by structured pruning (its init), ``round_to`` kept widths to multiples of k.
    - ``teacher``: None — the model the recipe started from; or a built-in model name of the task (its
      trained baseline), an artifact folder or a Hugging Face folder.
    - ``alpha`` in [0, 1]; ``temperature`` T in (0, 100].
    - ``hidden``, ``attention``: weights (≥ 0) of the feature terms; ``layer_map``: student module name →
      teacher module name for them (None: transformer layers mapped uniformly, student layer m ↔ teacher
      layer m·L_t/L_s, as TinyBERT's g(m) = 3m).
    - ``augment``: None — the training images as they are (the teacher's logits computed once per
      image); or `Augment` fields ``{shift, mixup, views}`` — "function matching" (Beyer et al. 2022):
      every epoch trains on a view in which each image is shifted and mixed with a partner, and the
      teacher's logits are those of that very image (consistent), so the student matches the teacher
      off the training images too. The label term then uses the mixed labels, so ``alpha: 0`` is label
      training on the same views (the fair baseline); image inputs ``(n, C, H, W)`` with integer
      class labels only. Beyer et al. use ``alpha: 1``, ``temperature: 1`` and long schedules.
    - ``epochs``, ``lr``, ``batch_size``, ``optimizer``, ``weight_decay``, ``schedule``: as `FineTune`.

    The whole student trains; a step ``select`` does not apply (freeze parameters with
    ``requires_grad=False`` to keep them).
    """

    student: Any = None
    teacher: str | None = None
    alpha: float = 0.5
    temperature: float = 4.0
    hidden: float = 0.0
    attention: float = 0.0
    layer_map: Any = None
    augment: Any = None
    epochs: int = 3
    lr: float = 1e-3
    batch_size: int | None = None
    optimizer: str = "adam"
    weight_decay: float = 0.0
    schedule: str = "constant"

    def __post_init__(self) -> None:
        own = "Distill"
        object.__setattr__(self, "student", _student(self.student))
        if self.teacher is not None and not (isinstance(self.teacher, str) and self.teacher):
            raise bad_value("teacher", own, "null (the recipe's input model), a model name or a folder", self.teacher)
        check_kd_weights(own, self.alpha, self.temperature)
        for name in ("hidden", "attention"):
            value = getattr(self, name)
            if not is_number(value) or value < 0:
                raise bad_value(name, own, "a float ≥ 0 (the weight of that loss term)", value)
        object.__setattr__(self, "layer_map", _layer_map(self.layer_map))
        object.__setattr__(self, "augment", _augment(self.augment))
        if self.augment is not None and self.uses_features:
            raise bad_value("augment", own, "null when hidden or attention matching is on", "a mapping",
                            "augmented views are for logit distillation; set hidden and attention to 0.")  # fmt: skip
        check_training_config(own, self.epochs, self.lr, self.batch_size, self.optimizer, self.weight_decay,
                              self.schedule)

    @property
    def uses_features(self) -> bool:
        """Whether hidden-state or attention matching is on (the teacher then runs beside every batch)."""
        return self.hidden > 0 or self.attention > 0
