"""Consistent augmented views (function matching): planted shifts and mixes, deterministic plans, the
teacher's logits cached on disk per view, and the config's checks."""

import numpy as np
import pytest
import torch
from torch import nn

import modelpress as mp
from modelpress.distillation import train_student
from modelpress.distillation.config import Augment
from modelpress.distillation.views import ViewPlan, mixed_labels, plan, view_images, view_logits
from modelpress.errors import BadInputError
from modelpress.pipeline.recipe import Recipe
from modelpress.tasks.metrics import ACCURACY, cross_entropy
from modelpress.tasks.task import Split, Task

from .conftest import tiny_text_task


class _ImageTeacher(nn.Module):
    """A linear classifier of 1×4×4 images that counts the images it has seen."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.fc = nn.Linear(16, 3)
        self.seen = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen += len(x)
        return self.fc(x.flatten(1))


def _image_task(n: int = 48) -> Task:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, 4, 4, generator=g)
    y = (x[:, 0, 0, 0] > 0).long() + (x[:, 0, 1, 1] > 0).long()
    split = Split((x,), y, "train")
    return Task(name="tiny-images", description="random 4×4 images", train=split, calibration=split,
                test=split, metric=ACCURACY, loss=cross_entropy, model=lambda name=None: _ImageTeacher(),
                default_model="linear", batch_size=16)  # fmt: skip


def test_planted_shift_and_mix():
    img = torch.arange(9.0).view(1, 1, 3, 3)  # minimum 0 fills the uncovered border
    down_left = ViewPlan(torch.tensor([1]), torch.tensor([-1]), torch.tensor([0]), torch.tensor([1.0]))
    got = view_images(img, torch.tensor([0]), down_left, Augment(shift=1, mixup=0, views=1))
    assert torch.equal(got, torch.tensor([[[[0.0, 0, 0], [1, 2, 0], [4, 5, 0]]]]))
    two = torch.stack([torch.full((1, 2, 2), 1.0), torch.full((1, 2, 2), 5.0)])
    mix = ViewPlan(torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long), torch.tensor([1, 0]),
                   torch.tensor([0.25, 1.0]))  # fmt: skip
    got = view_images(two, torch.tensor([0, 1]), mix, Augment(shift=0, mixup=1.0, views=1))
    assert torch.allclose(got[0], torch.full((1, 2, 2), 0.25 * 1 + 0.75 * 5)) and torch.equal(got[1], two[1])
    labels = mixed_labels(torch.tensor([2, 0]), torch.tensor([0, 1]), mix, 3)
    assert torch.allclose(labels, torch.tensor([[0.75, 0.0, 0.25], [1.0, 0.0, 0.0]]))


def test_plans_are_deterministic_and_in_range():
    aug = Augment(shift=2, mixup=0.5, views=3)
    a, b, other = plan(500, aug, 1), plan(500, aug, 1), plan(500, aug, 2)
    assert all(torch.equal(getattr(a, f), getattr(b, f)) for f in ("dy", "dx", "partner", "lam"))
    assert not torch.equal(a.partner, other.partner)
    assert a.dy.abs().max() == 2 and a.dx.abs().max() == 2 and set(a.dy.tolist()) == {-2, -1, 0, 1, 2}
    assert sorted(a.partner.tolist()) == list(range(500)) and 0 <= a.lam.min() and a.lam.max() <= 1
    off = plan(10, Augment(shift=1, mixup=0, views=1), 0)
    assert torch.equal(off.partner, torch.arange(10)) and torch.equal(off.lam, torch.ones(10))


def test_view_logits_are_the_teachers_on_each_view_and_cached_on_disk(tmp_path):
    task, teacher, aug = _image_task(), _ImageTeacher(), Augment(shift=1, mixup=1.0, views=2)
    bank = view_logits(teacher, task.train, aug, "fp", root=tmp_path)
    assert bank.shape == (2, 48, 3) and teacher.seen == 96
    x1 = view_images(task.train.inputs[0], torch.arange(48), plan(48, aug, 1), aug)
    assert torch.allclose(bank[1], teacher.fc(x1.flatten(1)).detach(), atol=1e-6)
    assert not torch.allclose(bank[0], bank[1])
    again = view_logits(teacher, task.train, Augment(shift=1, mixup=1.0, views=3), "fp", root=tmp_path)
    assert teacher.seen == 96 + 48 and torch.equal(again[:2], bank)  # only the new view was computed
    files = sorted(p.name for p in next(tmp_path.iterdir()).iterdir())
    assert files == ["view-0.npy", "view-1.npy", "view-2.npy"]
    assert np.load(next(tmp_path.iterdir()) / "view-1.npy", allow_pickle=False).shape == (48, 3)
    view_logits(teacher, task.train, aug, "another teacher", root=tmp_path)
    assert teacher.seen == 96 + 48 + 96  # another fingerprint, other files


def test_training_on_views(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELPRESS_CACHE", str(tmp_path))
    task, teacher = _image_task(), _ImageTeacher()
    aug = {"shift": 1, "mixup": 1.0, "views": 2}
    student = _ImageTeacher(seed=1)
    labels = train_student(student, teacher, task, mp.Distill(alpha=0.0, augment=aug, epochs=2), seed=0,
                           progress=False)  # fmt: skip
    assert teacher.seen == 0 and labels.teacher_outputs == "none"  # the label arm never asks the teacher
    assert student.seen == 2 * 48  # one view image per example per epoch
    kd = train_student(_ImageTeacher(seed=1), teacher, task, mp.Distill(alpha=1.0, temperature=1.0, augment=aug,
                       epochs=4, lr=0.05), seed=0, progress=False)  # fmt: skip
    assert teacher.seen == 2 * 48  # each view once, then from the bank
    assert kd.epoch_losses[-1] < 0.5 * kd.epoch_losses[0]  # the student converges to the teacher's function


def test_views_need_image_classification():
    text = tiny_text_task()
    with pytest.raises(BadInputError, match="`augment` of `Distill` needs one image input"):
        train_student(nn.Linear(1, 1), nn.Linear(1, 1), text, mp.Distill(augment={"shift": 1}), progress=False)


@pytest.mark.parametrize(
    "augment, field",
    [({"shift": -1}, "shift"), ({"shift": 9}, "shift"), ({"mixup": -0.1}, "mixup"), ({"views": 0}, "views"),
     ({"shift": 0, "mixup": 0}, "augment"), ({"crop": 2}, "augment"), ("shift", "augment")],
)
def test_bad_augment_names_the_field(augment, field):
    with pytest.raises(BadInputError, match=f"`{field}` of `Distill"):
        mp.Distill(augment=augment)
    with pytest.raises(BadInputError, match="`augment` of `Distill`"):
        mp.Distill(augment={"shift": 1}, hidden=1.0)


def test_augment_yaml_round_trip():
    recipe = Recipe.from_yaml("- distill: {student: lenet-300-100, alpha: 1, augment: {shift: 2, mixup: 1, views: 8}}")
    cfg = recipe.steps[0].config
    assert cfg.augment == Augment(shift=2, mixup=1.0, views=8)
    assert Recipe.from_list(recipe.to_list()).steps[0].config == cfg
