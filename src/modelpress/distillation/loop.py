"""Training a student against a teacher: `tasks.train.train` with a distillation loss hook.

The loop itself is `modelpress.tasks.train.train` (same seeding, shuffling, optimizer and schedule); this
module only supplies its ``loss_fn_override``. Each example's index rides along as an extra input so the
hook can look up the teacher's logits, computed once for the whole split before training: the training
data is not augmented, so a distillation epoch costs about one student epoch plus, once, one teacher
pass. That pass is remembered (`teacher_logits`) for the same teacher weights on the same data, so a
recipe that distils twice from its input model, or a benchmark over seeds, pays it once. With feature
matching on, the teacher runs beside every batch instead (its hidden states and attention maps would not
fit in memory for a whole split). With ``Distill.augment`` every epoch trains on one of a few shifted,
mixed-up views of the split instead (`views`), the teacher's logits of each view computed once and cached
on disk, so teacher and student always see the same image.
"""

from __future__ import annotations

import copy
import hashlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from modelpress.distillation.config import Distill
from modelpress.distillation.features import Tap, make_projections, project
from modelpress.distillation.layers import feature_map
from modelpress.distillation.losses import attention_kl, attention_probs, hidden_mse, kd_loss
from modelpress.distillation.views import ViewPlan, mixed_labels, plan, view_images, view_logits
from modelpress.errors import BadInputError
from modelpress.tasks.task import Split, Task
from modelpress.tasks.train import torch_predict, train

__all__ = ["KDResult", "teacher_logits", "train_student"]


@dataclass
class KDResult:
    """What `train_student` did: mean loss per epoch, the matched ``(student, teacher)`` module pairs,
    the projections' ``[d_student, d_teacher]`` per pair index, and how the teacher's outputs were got."""

    epoch_losses: list[float]
    pairs: list[tuple[str, str]] = field(default_factory=list)
    projections: dict[str, list[int]] = field(default_factory=dict)
    teacher_outputs: str = "none"


_MEMO: OrderedDict[str, Tensor] = OrderedDict()
_MEMO_SIZE = 4  # teachers x splits remembered; a 60k x 10 logits tensor is 2.4 MB


def _fingerprint(teacher: nn.Module, split: Split) -> str:
    """A digest of the teacher's class, tensor names and values and of the split's inputs: equal digests
    mean the same outputs, so a teacher trained or changed in between is never served stale logits.
    Hashing is about 1 s per 100M values, far below a teacher pass over the same data."""
    h = hashlib.blake2b(type(teacher).__qualname__.encode(), digest_size=20)
    for name, t in (*teacher.state_dict().items(), *((f"input{i}", x) for i, x in enumerate(split.inputs))):
        h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def teacher_logits(teacher: nn.Module, split: Split, batch_size: int = 256) -> Tensor:
    """The teacher's outputs for every example of ``split``, in order: ``(len(split), classes)``, CPU.

    Remembered for the last few (teacher weights, inputs) pairs, so a repeated call costs a hash of the
    weights and inputs instead of a pass (the returned tensor is shared: do not modify it).
    """
    key = _fingerprint(teacher, split)
    if key not in _MEMO:
        _MEMO[key] = torch_predict(teacher, batch_size)(split.inputs)
        while len(_MEMO) > _MEMO_SIZE:
            _MEMO.popitem(last=False)
    _MEMO.move_to_end(key)
    return _MEMO[key]


class _Trainee(nn.Module):
    """What the optimizer trains: the student, then the projections (no parameters when there are none,
    so a labels-only run optimizes exactly the student's parameters in their order)."""

    def __init__(self, student: nn.Module, projections: nn.ModuleDict) -> None:
        super().__init__()
        self.student = student
        self.projections = projections


def _probe(model: nn.Module, tap: Tap, inputs: tuple[Tensor, ...]) -> dict[str, Tensor]:
    was = model.training
    with torch.no_grad():
        model.eval()(*inputs)
    model.train(was)
    return dict(tap.hidden)


def _feature_terms(config: Distill, pairs, projections, s_tap: Tap, t_tap: Tap, mask: Tensor | None) -> Tensor:
    total = torch.zeros(())
    for i, (s, t) in enumerate(pairs):
        if config.hidden > 0:
            proj = projections[str(i)] if str(i) in projections else None  # noqa: SIM401 - ModuleDict has no .get
            total = total + config.hidden * hidden_mse(project(proj, s_tap.hidden[s]), t_tap.hidden[t]) / len(pairs)
        if config.attention > 0:
            qs, ks, hs = s_tap.qk[s]
            qt, kt, ht = t_tap.qk[t]
            a_s, a_t = attention_probs(qs, ks, hs, mask), attention_probs(qt, kt, ht, mask)
            total = total + config.attention * attention_kl(a_s, a_t, mask) / len(pairs)
    return total


def _check_views(task: Task) -> None:
    """BadInputError unless ``task.train`` is image classification (augmented views need one)."""
    x, y = task.train.inputs, task.train.targets
    if len(x) != 1 or x[0].dim() != 4 or not x[0].is_floating_point() or y.dim() != 1 or y.is_floating_point():
        raise BadInputError(
            "`augment` of `Distill` needs one image input (n, C, H, W) and integer class labels; got inputs "
            f"{[tuple(t.shape) for t in x]}, targets {tuple(y.shape)} {y.dtype}. Fix: set augment to null.")


def _views_loss(student: nn.Module, teacher: nn.Module, task: Task, config: Distill, batch_size: int,
                result: KDResult) -> Callable[[nn.Module, tuple[Tensor, ...], Tensor], Tensor]:  # fmt: skip
    """The loss hook for ``config.augment``: epoch ``e`` trains on view ``e mod views`` (its images made per
    batch from the plan, its teacher logits from the on-disk bank); mixed labels for the label term.
    The views do not depend on the training seed: like the data set itself, they are the same for every
    seed and for both arms of a labels-vs-distilled comparison."""
    aug = config.augment
    _check_views(task)
    images, targets = task.train.inputs[0], task.train.targets
    bank = view_logits(teacher, task.train, aug, _fingerprint(teacher, task.train)) if config.alpha > 0 else None
    result.teacher_outputs = f"once per example of each of {aug.views} views (cached on disk)" if bank is not None else "none"
    steps = -(-len(task.train) // batch_size)
    plans: dict[int, ViewPlan] = {}
    calls = [0]

    def loss_fn(_: nn.Module, inputs: tuple[Tensor, ...], targets_: Tensor) -> Tensor:
        v = (calls[0] // steps) % aug.views
        calls[0] += 1
        if v not in plans:
            plans.clear()  # one view's plan in memory at a time
            plans[v] = plan(len(images), aug, v)
        idx = inputs[-1].cpu()
        out = student(view_images(images, idx, plans[v], aug).to(inputs[0].device))
        value = torch.zeros((), device=out.device)
        if config.alpha < 1:
            soft_labels = mixed_labels(targets, idx, plans[v], out.shape[-1]).to(out.device)
            value = value + (1 - config.alpha) * torch.nn.functional.cross_entropy(out, soft_labels)
        if bank is not None:
            value = value + config.alpha * kd_loss(out, bank[v, idx].to(out.device), config.temperature)
        return value

    return loss_fn


def train_student(student: nn.Module, teacher: nn.Module, task: Task, config: Distill, *, seed: int = 0,
                  progress: bool = True, cached: Tensor | None = None) -> KDResult:  # fmt: skip
    """Train ``student`` in place on ``task.train`` with ``config``'s loss against ``teacher`` (not changed).

    ``config`` supplies the loss weights and the training settings (its ``student`` / ``teacher`` fields are
    not read here). ``cached``: the teacher's logits for the train split (`teacher_logits`), to share
    them between students; computed here when needed and None. Feature matching attends with the
    model's second input as the attention mask when it has two inputs (``input_ids, attention_mask``).
    Raises BadInputError for a bad layer map or unmatched feature shapes.
    """
    soft = config.alpha > 0
    batch_size = config.batch_size or task.batch_size
    pairs = feature_map(student, teacher, config.layer_map) if config.uses_features else []
    result = KDResult([], pairs)
    s_tap = t_tap = None
    projections = nn.ModuleDict()
    if pairs:
        teacher = copy.deepcopy(teacher).eval()  # hooks go on a copy: the caller's teacher is left alone
        s_tap = Tap(student, [s for s, _ in pairs], config.attention > 0)
        t_tap = Tap(teacher, [t for _, t in pairs], config.attention > 0)
        projections = make_projections(pairs, _probe(student, s_tap, task.example_inputs),
                                       _probe(teacher, t_tap, task.example_inputs))  # fmt: skip
        result.projections = {k: [p.in_features, p.out_features] for k, p in projections.items()}
        result.teacher_outputs = "every batch"
    elif config.augment is not None:
        loss_fn = _views_loss(student, teacher, task, config, batch_size, result)
    elif soft:
        cached = teacher_logits(teacher, task.train) if cached is None else cached
        result.teacher_outputs = "once per example"

    def plain_loss_fn(_: nn.Module, inputs: tuple[Tensor, ...], targets: Tensor) -> Tensor:
        *x, idx = inputs
        out = student(*x)
        if not soft and not pairs:
            return task.loss(out, targets)  # labels alone: exactly what `finetune` computes
        if pairs:
            with torch.no_grad():
                t_out = teacher(*x)
        else:
            t_out = cached[idx.cpu()].to(out.device)
        if config.alpha == 1:
            value = kd_loss(out, t_out, config.temperature)
        elif soft:
            value = (1 - config.alpha) * task.loss(out, targets) + config.alpha * kd_loss(out, t_out, config.temperature)
        else:
            value = task.loss(out, targets)
        if pairs:
            value = value + _feature_terms(config, pairs, projections, s_tap, t_tap, x[1] if len(x) > 1 else None)
        return value

    indexed = Split((*task.train.inputs, torch.arange(len(task.train))), task.train.targets, task.train.name)
    try:
        result.epoch_losses = train(
            _Trainee(student, projections), indexed, task.loss, epochs=config.epochs, lr=config.lr,
            batch_size=batch_size, optimizer=config.optimizer,
            weight_decay=config.weight_decay, schedule=config.schedule, seed=seed, progress=progress,
            loss_fn_override=loss_fn if config.augment is not None and not pairs else plain_loss_fn,
        )  # fmt: skip
    finally:
        for tap in (s_tap, t_tap):
            if tap is not None:
                tap.close()
    return result
