"""The `Distill` step handler."""

from __future__ import annotations

from dataclasses import asdict

from torch import nn

from modelpress.context import StepContext, StepLog
from modelpress.distillation.config import Distill
from modelpress.distillation.loop import train_student
from modelpress.distillation.student import build_student, check_outputs_fit, resolve_teacher, size_row
from modelpress.errors import BadInputError
from modelpress.tasks.train import evaluate

__all__ = ["apply_distill", "gap_closed"]


def gap_closed(before: float, after: float, teacher: float) -> float | None:
    """The share of the student–teacher gap that training closed: ``(after − before) / (teacher − before)``
    (1 = the student reached the teacher; works for lower-is-better metrics too); None when no gap."""
    gap = teacher - before
    return None if abs(gap) < 1e-12 else (after - before) / gap


def _teacher_metric(config: Distill, teacher: nn.Module, ctx: StepContext) -> float:
    task = ctx.require_task("distill")
    if config.teacher is None and ctx.reference is teacher and ctx.baseline is not None:
        return float(ctx.baseline.metric)  # the recipe's input model, already measured on the test split
    return evaluate(teacher, task)


def apply_distill(model: nn.Module, config: Distill, ctx: StepContext) -> StepLog:
    """Train a student against a teacher as ``config`` says; return the log.

    With ``student`` None the student is ``model``, trained in place. Any other student is a new model,
    returned in ``log.model`` (``model`` is then left as it was); the pipeline continues with it.
    Before training, the student's and the teacher's params and MACs are printed (when ``ctx.progress``)
    and logged. ``details``: ``teacher`` / ``student`` rows (params, macs, metric; the student's also
    ``metric_before``), ``gap_closed`` (`gap_closed`, metrics on the task's test split), ``epoch_losses``,
    the matched ``pairs``, ``projections`` and how teacher outputs were computed.
    Raises BadInputError before training for a teacher whose outputs do not fit the task, a bad student
    spec or layer map, or when ``ctx.task`` is None.
    """
    if not isinstance(config, Distill):
        raise BadInputError(f"`config` of `apply_distill` must be a Distill; got {type(config).__name__}.")
    task = ctx.require_task("distill")
    teacher = resolve_teacher(config.teacher, model, ctx, task)
    student, built = build_student(config.student, model, teacher, task, seed=ctx.seed)
    check_outputs_fit(teacher, student, task)
    log = StepLog("distill", asdict(config))
    t_row, s_row = size_row(teacher, task), size_row(student, task)
    if ctx.progress:
        print(f"  distill: teacher {t_row['params']:,} params, {t_row['macs']:,} MACs; student "
              f"{s_row['params']:,} params, {s_row['macs']:,} MACs "
              f"({s_row['macs'] / max(t_row['macs'], 1):.2f}× the teacher's MACs)", flush=True)  # fmt: skip
    t_row["metric"] = _teacher_metric(config, teacher, ctx)
    s_row["metric_before"] = evaluate(student, task)
    result = train_student(student, teacher, task, config, seed=ctx.seed, progress=ctx.progress)
    s_row["metric"] = evaluate(student, task)
    log.details.update(
        student_built=built, teacher=t_row, student=s_row, metric_name=task.metric.name,
        gap_closed=gap_closed(s_row["metric_before"], s_row["metric"], t_row["metric"]),
        epoch_losses=[round(x, 6) for x in result.epoch_losses], pairs=[list(p) for p in result.pairs],
        projections=result.projections, teacher_outputs=result.teacher_outputs,
    )  # fmt: skip
    if student is not model:
        log.model = student
    return log
