"""The one sensitivity analysis: any step, one layer at a time, on held-out calibration data."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

from modelpress.cli import main
from modelpress.errors import BadInputError
from modelpress.pruning import Prune
from modelpress.quantization import Quantize
from modelpress.search.sensitivity import held_out, layers_for, one_at_a_time, sensitivity
from modelpress.tasks import get
from modelpress.tasks.models import build
from modelpress.tasks.train import evaluate, train


@pytest.fixture(scope="module")
def digits():
    return get("digits")


@pytest.fixture(scope="module")
def lenet(digits) -> nn.Module:
    torch.manual_seed(0)
    model = build("lenet-300-100", input_shape=(1, 8, 8))
    train(model, digits.train, digits.loss, epochs=3, lr=2e-3, batch_size=64, progress=False)
    return model.eval()


def test_held_out_is_the_second_half_of_calibration_and_never_test(digits):
    steps_task, split, what = held_out(digits)
    cal = digits.calibration
    assert len(steps_task.calibration) == len(split) == len(cal) // 2 == 128
    assert torch.equal(steps_task.calibration.inputs[0], cal.inputs[0][:128])
    assert torch.equal(split.inputs[0], cal.inputs[0][128:])
    # no held-out example is a test example (each 8x8 image compared exactly)
    test = digits.test.inputs[0].flatten(1)
    assert not any(bool((test == x).all(1).any()) for x in split.inputs[0].flatten(1))
    assert "calibration[128:256]" in what and held_out(digits, limit=10)[1].targets.numel() == 10


def test_quantize_sensitivity_one_layer_at_a_time_restores_the_model(lenet, digits):
    before = copy.deepcopy(lenet.state_dict())
    res = sensitivity(lenet, digits, Quantize(mode="int4-weight", granularity="channel"), progress=False)
    assert all(torch.equal(v, lenet.state_dict()[k]) for k, v in before.items())  # never modified
    assert res.step == "quantize" and res.columns == ("int4-weight",) and res.layers == ["fc1", "fc2", "fc3"]
    # the cell equals quantizing that layer alone by hand, measured on the same held-out examples
    steps_task, split, _ = held_out(digits)
    manual = copy.deepcopy(lenet)
    from modelpress.context import StepContext
    from modelpress.quantization import apply_quantize
    from modelpress.select import by_name

    apply_quantize(manual, Quantize(mode="int4-weight", granularity="channel"),
                   StepContext(task=steps_task, select=by_name("fc2"), progress=False))
    assert res.values["fc2"][0] == pytest.approx(steps_task.metric(lambda x: manual(*x), split), abs=1e-9)
    assert res.baseline == pytest.approx(digits.metric(lambda x: lenet(*x), split), abs=1e-9)
    assert res.baseline > 0.9 and all(abs(v[0] - res.baseline) <= 0.1 for v in res.values.values())
    assert res.split_size == 128 and "never" not in res.split and "held out" in res.split


def test_a_sweep_of_modes_gives_one_column_per_mode(lenet, digits):
    res = sensitivity(lenet, digits, [Quantize(mode="int8-weight"), Quantize(mode="int4-weight")], limit=64,
                      progress=False)
    assert res.sweep == "mode" and res.columns == ("int8-weight", "int4-weight") and res.split_size == 64
    d = json.loads(json.dumps(res.to_dict()))
    assert d["layers"]["fc1"] == list(res.values["fc1"]) and d["step"] == "quantize"


def test_one_at_a_time_ranks_a_planted_sensitive_layer_first(lenet, digits):
    model = copy.deepcopy(lenet)
    steps_task, split, _ = held_out(digits)
    scale = {"fc1": 1.0, "fc2": 0.0, "fc3": 1.0}  # zeroing fc2 kills the model; scaling by 1 changes nothing

    def change(name):
        w = model.get_submodule(name).weight
        saved = w.detach().clone()
        with torch.no_grad():
            w.mul_(scale[name])
        return lambda: w.data.copy_(saved)

    base, _, ranked = one_at_a_time(model, ["fc1", "fc2", "fc3"], change, steps_task, split)
    assert ranked[0].module == "fc2" and ranked[0].drop > 0.5
    assert {s.module: s.drop for s in ranked[1:]} == {"fc1": 0.0, "fc3": 0.0}
    assert ranked[0].metric == pytest.approx(base - ranked[0].drop)
    assert evaluate(model, digits) == evaluate(lenet, digits)  # restored


def test_layers_for_any_step_and_mixed_kinds_are_refused(lenet, digits):
    assert layers_for(lenet, Prune(structure="neuron"), digits) == ["fc1", "fc2"]
    assert layers_for(lenet, Quantize()) == ["fc1", "fc2", "fc3"]
    with pytest.raises(BadInputError, match="one step kind"):
        sensitivity(lenet, digits, [Prune(), Quantize()], progress=False)


def test_cli_quantize_writes_table_json_plot_and_html(tmp_path, capsys):
    out = tmp_path / "q"
    assert main(["sensitivity", "--task", "digits", "--model", "lenet-300-100", "--step", "quantize",
                 "--set", "mode=int4-weight", "--limit", "64", "--out", str(out)]) == 0
    assert "fc1" in capsys.readouterr().out
    data = json.loads((out / "sensitivity.json").read_text())
    assert data["step"] == "quantize" and data["columns"] == ["int4-weight"] and data["split_size"] == 64
    assert set(data["layers"]) == {"fc1", "fc2", "fc3"}
    assert (out / "sensitivity.png").read_bytes()[:4] == b"\x89PNG"
    assert "data:image/png;base64" in (out / "sensitivity.html").read_text()


@pytest.mark.parametrize("argv, message", [
    (["--step", "quantise"], "Did you mean `quantize`"),
    (["--step", "quantize", "--ratios", "0.5"], "prune's"),
    (["--step", "quantize", "--set", "mode"], "FIELD=VALUE"),
    (["--step", "quantize", "--set", "mode=int3"], "mode"),
])
def test_cli_bad_flags_exit_2_with_one_message(argv, message, capsys):
    assert main(["sensitivity", "--task", "digits", *argv]) == 2
    assert message in capsys.readouterr().err


def test_sqnr_ranks_layers_where_the_metric_saturates(lenet, digits, tmp_path):
    from modelpress.search.sensitivity import sqnr_db

    ref = torch.tensor([[3.0, 4.0]])
    assert sqnr_db(ref, ref) == float("inf")
    assert sqnr_db(ref, ref + torch.tensor([[0.3, 0.4]])) == pytest.approx(20.0)  # noise 1/10 of the signal
    res = sensitivity(lenet, digits, [Prune(sparsity=0.0), Prune(sparsity=0.9)], limit=64, progress=False)
    for name in res.layers:
        assert res.sqnr[name][0] == float("inf") and res.to_dict()["sqnr_db"][name][0] is None  # unchanged
        assert res.sqnr[name][1] < 40  # 90% of a layer pruned moves the outputs
    assert "output SQNR" in res.table()
    assert res.plot(tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"


def test_a_training_step_or_a_step_changing_nothing_is_refused(lenet, digits):
    from modelpress.finetune import FineTune

    with pytest.raises(BadInputError, match="no per-layer form"):
        sensitivity(lenet, digits, FineTune(), progress=False)
    with pytest.raises(BadInputError, match="changing none"):
        sensitivity(lenet, digits, Quantize(), select=lambda n, m: False, progress=False)
