"""The measured pipeline end to end on a small task: artifact, ONNX, report.json schema, no side effects."""

import json
import re

import pytest
import torch

import modelpress as mp
from modelpress.cli import main
from modelpress.pipeline.report import REPORT_FIELDS, STATS_FIELDS


@pytest.fixture(scope="module")
def digits():
    return mp.tasks.get("digits")


@pytest.fixture(scope="module")
def compressed_run(tmp_path_factory, digits):
    out = tmp_path_factory.mktemp("run") / "ft"
    model = digits.model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    recipe = mp.Recipe.from_list([mp.FineTune(epochs=1, lr=1e-4)])
    result = mp.run(recipe, digits, model=model, out=out, settings=mp.MeasureSettings(runs=5), progress=False)
    return out, model, before, result


def test_report_schema_complete(compressed_run):
    out, _, _, result = compressed_run
    report = json.loads((out / "report.json").read_text())
    assert set(REPORT_FIELDS) <= set(report)
    for stage in [report["baseline"], report["compressed"], report["deployed"]] + [s["stats"] for s in report["steps"]]:
        assert set(STATS_FIELDS) <= set(stage)
    # auto: the measured winner among onnxruntime, OpenVINO and ExecuTorch (those installed)
    assert report["deployed"]["runtime"] == report["deploy"]["shipped"]["runtime"]
    assert report["deployed"]["runtime"] in ("onnxruntime", "openvino", "executorch")
    assert report["baseline"]["runtime"] == "torch"
    # to the fp32 model on the test split (one epoch of fine-tuning changed about 2% of the answers)
    fid = report["deployed"]["fidelity"]
    assert 0.9 <= fid["agreement"] <= 1.0 and fid["n"] > 0
    assert report["steps"][0]["name"] == "finetune" and report["steps"][0]["skipped"] == []
    assert report["recipe"] == result.report["recipe"]
    assert (out / "model" / "manifest.json").is_file() and (out / "model.onnx").is_file()
    assert 0 <= report["artifact"]["size_bytes"] - report["compressed"]["size_bytes"] < 2000  # + the recipe
    assert "<img" in (out / "report.html").read_text()


def test_callers_model_untouched(compressed_run):
    _, model, before, _ = compressed_run
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_deployed_matches_compressed_metric(compressed_run):
    _, _, _, result = compressed_run
    assert result.deployed is not None
    assert abs(result.deployed.metric - result.compressed.metric) <= 0.002
    assert result.compressed.metric >= result.baseline.metric - 0.05


def test_artifact_reloads_to_same_metric(compressed_run, digits):
    out, _, _, result = compressed_run
    loaded = mp.load(out / "model")
    assert mp.measure(loaded, digits, runs=3).metric == pytest.approx(result.compressed.metric, abs=1e-9)


def test_every_step_is_timed_interleaved_with_the_baseline(digits):
    """Each step's model is kept and timed side by side with the baseline and the deployed model, so the
    per-stage latency ratios are comparable (each step's own latency_ms is timed alone)."""
    from modelpress.commands import summarize

    recipe = mp.Recipe.from_list([mp.Prune(structure="neuron", sparsity=0.5), mp.FineTune(epochs=1, lr=1e-4)])
    result = mp.run(recipe, digits, settings=mp.MeasureSettings(runs=3), progress=False)
    lat = result.report["latency_interleaved"]
    assert len(lat["steps_ratio_vs_baseline"]) == 2 and min(lat["steps_ratio_vs_baseline"]) > 0
    assert lat["steps_ratio_vs_baseline"][-1] == lat["ratio_vs_baseline"]["compressed"]
    table = summarize(result.report).splitlines()
    rows = [line for line in table if line.startswith(("baseline", "1. prune", "2. finetune", "deployed"))]
    assert len(rows) == 4 and all("×" in line for line in rows)
    assert rows[0].split()[5] == "1.00×"


def test_a_given_baseline_is_used_not_measured_again(digits, monkeypatch):
    """Several recipes on one model (the demo) measure the baseline once and hand it to each run."""
    import importlib

    run_module = importlib.import_module("modelpress.pipeline.run")  # the module, not the function
    model = digits.model()
    baseline = mp.measure(model, digits, runs=3)
    measured = []
    real = run_module.measure
    monkeypatch.setattr(run_module, "measure", lambda m, t, **kw: measured.append(1) or real(m, t, **kw))
    result = mp.run(mp.Recipe.from_list([mp.FineTune(epochs=1, lr=1e-4)]), digits, model=model,
                    settings=mp.MeasureSettings(runs=3), progress=False, baseline=baseline, deploy=False)  # fmt: skip
    assert result.baseline is baseline and result.report["baseline"] == baseline.to_dict()
    assert len(measured) == 1  # the step's model only


def test_cli_compress_and_evaluate(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["compress", "--task", "digits", "--recipe", "finetune", "--out", str(out), "--runs", "3"]) == 0
    text = capsys.readouterr().out
    assert re.search(r"deployed \((onnxruntime|openvino|executorch)\)", text)
    assert "× baseline" in text and "timed interleaved" in text
    js = tmp_path / "stats.json"
    assert main(["evaluate", "--task", "digits", "--model", str(out / "model"), "--json", str(js), "--runs", "3"]) == 0
    stats = json.loads(js.read_text())
    report = json.loads((out / "report.json").read_text())
    assert stats["metric"] == pytest.approx(report["compressed"]["metric"], abs=1e-9)
    assert stats["size_bytes"] == report["compressed"]["size_bytes"]


def test_run_refuses_to_overwrite_its_input_artifact(compressed_run, digits):
    out, _, _, _ = compressed_run
    before = (out / "model" / "manifest.json").read_bytes()
    model = mp.load(out / "model")
    with pytest.raises(mp.BadInputError, match="input artifact"):
        mp.run(mp.Recipe.resolve("finetune"), digits, model=model, out=out, progress=False)
    assert (out / "model" / "manifest.json").read_bytes() == before


def test_model_without_source_is_refused_before_any_work(tmp_path, digits):
    plain = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    with pytest.raises(mp.BadInputError, match="no source"):
        mp.run(mp.Recipe.resolve("finetune"), digits, model=plain, out=tmp_path / "o", progress=False)
    assert not (tmp_path / "o").exists()


def test_model_that_does_not_fit_the_task_is_bad_input(digits):
    wrong = mp.tasks.models.build("lenet-300-100", input_shape=(1, 28, 28), num_classes=10)
    with pytest.raises(mp.BadInputError, match="does not run on task `digits`"):
        mp.run(mp.Recipe.resolve("finetune"), digits, model=wrong, progress=False, deploy=False)


def test_failing_step_is_rolled_back_and_reported(monkeypatch, digits):
    from modelpress.errors import CompressionError
    from modelpress.finetune import FineTune
    from modelpress.pipeline import steps

    def breaks_halfway(model, config, ctx):
        with torch.no_grad():
            next(model.parameters()).zero_()  # damage first, then fail: the rollback must undo it
        raise CompressionError("planted failure")

    monkeypatch.setitem(steps.STEPS, "finetune", steps.StepKind("finetune", FineTune, breaks_halfway))
    model = digits.model()
    result = mp.run(mp.Recipe.from_list([FineTune()]), digits, model=model, progress=False, deploy=False,
                    settings=mp.MeasureSettings(runs=3))
    assert result.steps[0]["error"] == "rolled back: planted failure"
    assert result.compressed.metric == result.baseline.metric
    ref = dict(model.named_parameters())
    assert all(torch.equal(p, ref[n]) for n, p in result.model.named_parameters())
