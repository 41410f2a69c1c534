"""Knowledge distillation: a student learns from a teacher's soft targets, hidden states and attention.

>>> import modelpress as mp
>>> res = mp.run(mp.Recipe.from_yaml("- distill: {student: {layers: [0, 2, 4]}, epochs: 2}"),
...              mp.tasks.get("bbc-news"))                                        # doctest: +SKIP

Layers, one direction: `losses` (pure tensor functions) ← `features` / `layers` (hooks, projections,
layer maps) and `views` (consistent augmented views, their teacher logits cached on disk) ← `loop` (the
training hook) and `student` (building students, loading teachers) ← `step`.
"""

from modelpress.distillation.config import Augment, Distill
from modelpress.distillation.loop import KDResult, teacher_logits, train_student
from modelpress.distillation.losses import (
    attention_kl,
    attention_probs,
    hidden_mse,
    kd_loss,
    uniform_layer_map,
)
from modelpress.distillation.step import apply_distill, gap_closed

__all__ = [
    "Augment", "Distill", "KDResult", "apply_distill", "attention_kl", "attention_probs", "gap_closed", "hidden_mse",
    "kd_loss", "teacher_logits", "train_student", "uniform_layer_map",
]
