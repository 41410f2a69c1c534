"""`augment: true` of the training steps (FineTune, Prune's schedules, Share's fine-tuning): they learn from
`Task.augment(train)`, only when asked; a task without an augmentation trains as usual and the log says so."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import modelpress as mp
from modelpress.finetune import FineTune
from modelpress.pruning import Prune
from modelpress.sharing import Share
from modelpress.tasks.task import Split
from modelpress.tasks.train import training_task


def _all_threes(split: Split) -> Split:
    """A test "augmentation" no real task would use: the split twice, every label 3. A model trained on it
    predicts 3 everywhere, which shows which data the step learned from."""
    return Split(tuple(torch.cat([t, t]) for t in split.inputs), torch.full((2 * len(split),), 3), "threes")


def _task(augment=_all_threes):
    return dataclasses.replace(mp.tasks.get("digits"), augment=augment)


def _share_of_threes(model, task) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(task.test.inputs[0]).argmax(1) == 3).float().mean())


def test_mnist_5k_augmentation_is_its_baselines_shifts():
    task = mp.tasks.get("mnist-5k")
    aug = task.augmented()
    assert len(aug.train) == 9 * len(task.train) == 36_000  # the split plus its 8 one-pixel shifts
    assert torch.equal(aug.train.inputs[0][: len(task.train)], task.train.inputs[0])
    assert aug.test is task.test and aug.calibration is task.calibration and aug.augment is None
    assert mp.tasks.get("fashion-mnist").augment is None  # 9 copies of 60k images would not fit in memory


def test_training_task_notes():
    plain = mp.tasks.get("digits")
    assert training_task(plain, False) == (plain, None)
    same, note = training_task(plain, True)
    assert same is plain and note == "none: task digits defines no augmentation; trained on its 1,257 examples as they are"
    aug, note = training_task(_task(), True)
    assert len(aug.train) == 2514 and note == "threes: 2,514 examples (1,257 before augmentation)"


@pytest.mark.parametrize("step, floor", [
    (FineTune(epochs=2, lr=1e-3, augment=True), 0.9),
    # the teacher's soft targets (computed on the augmented split too) still pull toward the true digits
    (FineTune(epochs=2, lr=1e-3, distill=True, alpha=0.2, augment=True), 0.5),
    (Prune(sparsity=0.5, schedule="gradual", epochs=2, augment=True), 0.9),
    (Share(bits=4, epochs=2, lr=1e-2, augment=True), 0.9),
], ids=["finetune", "finetune-distill", "prune-gradual", "share"])
def test_steps_learn_from_the_augmentation_when_asked(step, floor):
    task = _task()
    model = task.model()
    before = _share_of_threes(model, task)
    log = mp.compress_(model, step, task=task, reference=task.model(), progress=False)
    assert before < 0.2  # digits are balanced: about 0.1 of the test images are 3s
    assert _share_of_threes(model, task) > floor, log.details
    assert log.details["augment"].startswith("threes: 2,514 examples")


def test_off_by_default():
    task = _task()
    model = task.model()
    log = mp.compress_(model, FineTune(epochs=2, lr=1e-3), task=task, progress=False)
    assert "augment" not in log.details and _share_of_threes(model, task) < 0.2
