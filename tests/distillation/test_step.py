"""The Distill step: sizes printed before training, the teacher beside the student, a clear error for a
teacher that does not fit, and a new student carried through the pipeline into a loadable artifact."""

import pytest
import torch

import modelpress as mp
from modelpress.cli import main
from modelpress.errors import BadInputError
from modelpress.tasks.train import evaluate


def _digits_model(classes: int = 10, seed: int = 0):
    torch.manual_seed(seed)
    return mp.tasks.models.build("lenet-300-100", input_shape=(1, 8, 8), num_classes=classes)


def test_student_learns_from_teacher_and_the_report_compares_them(capsys):
    task = mp.tasks.get("digits")
    teacher = task.model()
    log = mp.compress_(teacher, mp.Distill(student="lenet-300-100", alpha=0.9, epochs=6, lr=2e-3, schedule="cosine"),
                       task=task, reference=teacher, seed=1)  # fmt: skip
    printed = capsys.readouterr().out
    assert "teacher 50,610 params" in printed and "MACs" in printed
    d = log.details
    assert log.model is not None and log.model is not teacher
    assert d["teacher"]["metric"] == pytest.approx(evaluate(teacher, task))
    assert d["student"]["metric"] == pytest.approx(evaluate(log.model, task))
    assert d["student"]["metric_before"] < 0.3 and d["student"]["metric"] > 0.85  # chance is 0.1
    expected = (d["student"]["metric"] - d["student"]["metric_before"]) / (d["teacher"]["metric"] - d["student"]["metric_before"])
    assert d["gap_closed"] == pytest.approx(expected) and d["teacher_outputs"] == "once per example"


def test_a_teacher_with_other_classes_is_a_clear_error_before_training():
    task = mp.tasks.get("digits")
    model, teacher = _digits_model(10), _digits_model(5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(BadInputError, match=r"`teacher` of `Distill` must be a model whose outputs fit task `digits`"):
        mp.compress_(model, mp.Distill(), task=task, reference=teacher, progress=False)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # nothing was trained


def test_mismatched_teacher_folder_exits_2_on_the_cli(tmp_path, capsys):
    mp.save(_digits_model(5), tmp_path / "teacher5")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"- distill: {{teacher: '{tmp_path / 'teacher5'}', epochs: 1}}\n")
    code = main(["compress", "--task", "digits", "--recipe", str(recipe), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "`teacher` of `Distill`" in err and "Traceback" not in err


def test_run_continues_with_the_student_and_its_artifact_loads(tmp_path):
    task = mp.tasks.get("digits")
    recipe = mp.Recipe.from_yaml("- distill: {student: {width: 0.5}, alpha: 0.9, epochs: 2}")
    res = mp.run(recipe, task, out=tmp_path / "out", progress=False, deploy=False)
    assert res.model.fc1.out_features == 150
    step = res.steps[0]
    assert step["details"]["teacher"]["metric"] == pytest.approx(res.baseline.metric)
    assert step["stats"]["params"] < res.baseline.params and step["details"]["student"]["params"] == step["stats"]["params"]
    loaded = mp.load(tmp_path / "out" / "model").eval()
    x = task.test.inputs[0][:8]
    with torch.no_grad():
        assert torch.equal(loaded(x), res.model.eval()(x))
