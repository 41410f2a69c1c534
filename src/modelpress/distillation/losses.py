"""Pure distillation losses on tensors: soft targets, hidden states, attention maps, layer maps."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["attention_kl", "attention_probs", "hidden_mse", "kd_loss", "uniform_layer_map"]


def kd_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """Hinton et al.'s soft-target loss: ``T² · KL(softmax(t/T) ‖ softmax(s/T))``, mean over the batch.

    ``student_logits``, ``teacher_logits``: ``(n, classes)``. The T² factor keeps the gradient's scale
    independent of T, so the soft and the label term can be mixed with one weight. Returns a scalar.
    """
    t = float(temperature)
    log_s = F.log_softmax(student_logits / t, dim=-1)
    log_p = F.log_softmax(teacher_logits.to(log_s.dtype) / t, dim=-1)
    return F.kl_div(log_s, log_p, reduction="batchmean", log_target=True) * (t * t)


def hidden_mse(student: Tensor, teacher: Tensor) -> Tensor:
    """Mean squared difference of two feature tensors of one shape (the student's already projected)."""
    return F.mse_loss(student, teacher.to(student.dtype))


def attention_probs(query: Tensor, key: Tensor, heads: int, mask: Tensor | None = None) -> Tensor:
    """Scaled dot-product attention maps ``softmax(q kᵀ / √d)`` of shape ``(n, heads, tokens, tokens)``.

    ``query``, ``key``: the projections' outputs ``(n, tokens, heads · d)``; ``mask``: ``(n, tokens)``, 1
    for a real token and 0 for padding (padded keys get probability 0), or None.
    """
    n, tokens, width = query.shape
    d = width // heads
    q = query.view(n, tokens, heads, d).transpose(1, 2)
    k = key.view(n, tokens, heads, d).transpose(1, 2)
    scores = q @ k.transpose(-1, -2) / d**0.5
    if mask is not None:
        scores = scores.masked_fill(mask[:, None, None, :] == 0, torch.finfo(scores.dtype).min)
    return scores.softmax(-1)


def attention_kl(student: Tensor, teacher: Tensor, mask: Tensor | None = None) -> Tensor:
    """KL(teacher ‖ student) of attention rows, mean over the real query tokens (MiniLM, Wang et al. 2020).

    ``student``, ``teacher``: ``(n, heads, tokens, tokens)`` probabilities; when the head counts differ
    (a student with pruned heads) both are averaged over their heads first. ``mask``: ``(n, tokens)``.
    """
    if student.shape[1] != teacher.shape[1]:
        student, teacher = student.mean(1, keepdim=True), teacher.mean(1, keepdim=True)
    tiny = torch.finfo(student.dtype).tiny
    teacher = teacher.to(student.dtype)
    rows = (teacher * (teacher.clamp_min(tiny).log() - student.clamp_min(tiny).log())).sum(-1)  # (n, h, tokens)
    if mask is None:
        return rows.mean()
    m = mask[:, None, :].to(rows.dtype).expand_as(rows)
    return (rows * m).sum() / m.sum().clamp_min(1)


def uniform_layer_map(student_layers: int, teacher_layers: int) -> list[tuple[int, int]]:
    """Student layer ``m`` (0-based) → teacher layer ``⌈(m + 1) · L_t / L_s⌉ − 1``: evenly spread, the last
    layers matched (TinyBERT's g(m) = 3m for 4 of 12 layers). Both counts must be ≥ 1."""
    if student_layers < 1 or teacher_layers < 1:
        raise ValueError(f"layer counts must be >= 1; got {student_layers}, {teacher_layers}")
    return [(m, -(-(m + 1) * teacher_layers // student_layers) - 1) for m in range(student_layers)]
