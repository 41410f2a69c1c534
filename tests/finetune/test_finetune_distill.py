"""`finetune: {distill: true}` and `distill` with alpha 0: label training is exactly `finetune`; with the
teacher's soft targets the student's outputs move towards the teacher's."""

import copy

import pytest
import torch

import modelpress as mp
from modelpress.distillation import kd_loss
from modelpress.errors import BadInputError
from modelpress.tasks.train import torch_predict


def _fresh(seed: int = 0):
    torch.manual_seed(seed)
    return mp.tasks.models.build("lenet-300-100", input_shape=(1, 8, 8), num_classes=10)


def _equal(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


@pytest.fixture(scope="module")
def task():
    return mp.tasks.get("digits")


def test_alpha_zero_equals_finetune_exactly(task):
    teacher = task.model()
    plain, kd0, ft0 = _fresh(), _fresh(), _fresh()
    kw = {"epochs": 2, "lr": 2e-3, "optimizer": "sgd", "schedule": "cosine"}
    mp.compress_(plain, mp.FineTune(**kw), task=task, seed=7, progress=False)
    mp.compress_(kd0, mp.Distill(alpha=0.0, **kw), task=task, seed=7, reference=teacher, progress=False)
    mp.compress_(ft0, mp.FineTune(distill=True, alpha=0.0, **kw), task=task, seed=7, reference=teacher, progress=False)
    assert _equal(plain, kd0) and _equal(plain, ft0)
    assert not _equal(plain, _fresh())  # and it did train


def test_builtin_student_with_alpha_zero_is_finetune_of_its_seeded_init(task):
    teacher = task.model()
    log = mp.compress_(teacher, mp.Distill(student="lenet-300-100", alpha=0.0, epochs=1), task=task, seed=3,
                       reference=teacher, progress=False)  # fmt: skip
    with torch.random.fork_rng():
        torch.manual_seed(3)
        same_init = mp.tasks.models.build("lenet-300-100", input_shape=(1, 8, 8), num_classes=10)
    mp.compress_(same_init, mp.FineTune(epochs=1), task=task, seed=3, progress=False)
    assert _equal(log.model, same_init)


def test_distillation_moves_the_student_towards_the_teacher(task):
    teacher = task.model()
    t_out = torch_predict(teacher)(task.test.inputs)
    labels, soft = _fresh(), _fresh()
    mp.compress_(labels, mp.FineTune(epochs=3), task=task, progress=False)
    log = mp.compress_(soft, mp.FineTune(epochs=3, distill=True, alpha=1.0, temperature=4.0), task=task,
                       reference=teacher, progress=False)  # fmt: skip
    kl_labels = kd_loss(torch_predict(labels)(task.test.inputs), t_out, 4.0).item()
    kl_soft = kd_loss(torch_predict(soft)(task.test.inputs), t_out, 4.0).item()
    assert kl_soft < 0.7 * kl_labels  # measured 0.50× here (seed 0, 3 epochs)
    assert log.details["teacher_outputs"] == "once per example"


def test_distill_finetune_needs_the_reference(task):
    with pytest.raises(BadInputError, match="`distill` of `FineTune`"):
        mp.compress_(_fresh(), mp.FineTune(distill=True), task=task, progress=False)


def test_the_reference_is_never_modified(task):
    teacher = task.model()
    snapshot = copy.deepcopy(teacher.state_dict())
    mp.compress_(_fresh(), mp.FineTune(distill=True, epochs=1), task=task, reference=teacher, progress=False)
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in snapshot.items())
