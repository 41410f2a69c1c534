"""Deployment across runtimes: OpenVINO candidates beside onnxruntime's, the IR shipped where it wins,
its label read off what OpenVINO executes, and no crash without OpenVINO."""

from __future__ import annotations

import copy

import pytest
import torch

from modelpress.context import DeployTarget, StepContext
from modelpress.measure import executorch_runtime as etr
from modelpress.measure import openvino_runtime as ovr
from modelpress.pipeline.deploy import export_deployed
from modelpress.pipeline.recipe import Recipe
from modelpress.quantization import apply_quantize

needs_ov = pytest.mark.skipif(not ovr.openvino_available(), reason="openvino is not installed")


@pytest.fixture(scope="module")
def digits():
    from modelpress import tasks

    task = tasks.get("digits")
    return task, task.model().eval()  # the cached trained LeNet-300-100 (about 0.96 accuracy)


def _quantized(digits, mode="int8-static"):
    task, fp32 = digits
    steps = Recipe.from_list([{"quantize": {"mode": mode}}]).steps
    q = copy.deepcopy(fp32)
    apply_quantize(q, steps[0].config, StepContext(task=task, progress=False))
    return task, fp32, q, steps


@needs_ov
def test_runtime_openvino_ships_the_ir(digits, tmp_path):
    task, fp32, q, steps = _quantized(digits)
    path = tmp_path / "model.onnx"
    info = export_deployed(q, steps, task, path, reference=fp32, target=DeployTarget(runtime="openvino"))
    d, shipped = info["quantize"], info["shipped"]
    assert d["runtime"] == shipped["runtime"] == "openvino" and shipped["file"] == "model.xml"
    assert {c["runtime"] for c in d["candidates"] if "error" not in c} == {"openvino"}
    xml = path.with_suffix(".xml")
    # the label is what OpenVINO executes, read back from the compiled IR
    executed = ovr.executed_format(ovr.compile_openvino(xml))
    assert shipped["executed_layers"] == executed.layers and shipped["bytes"] == ovr.ir_bytes(xml)
    assert executed.precision == d["executed"]["precision"]  # the chosen precision is recorded in the IR
    layers = executed.layers
    assert sum(layers.values()) == 3  # fc1, fc2, fc3, each executed in one precision
    # which candidate wins is measured on this CPU, so every kind it may ship is checked
    if shipped["format"] == "int8-static":
        assert layers == {"int8": 3}
    elif shipped["format"] == "int8-weight":
        # weights stored int8: OpenVINO runs a layer in int8 or decompresses its weights to the hint's
        # precision (seen on an AMX Xeon with the bf16 hint: {'int8': 1, 'bf16': 2}); at least one int8
        assert layers.get("int8", 0) >= 1 and set(layers) <= {"int8", executed.precision}
    else:
        assert "int8" not in layers
    # the shipped IR agrees with the int8 simulation on the test split
    out, sim = ovr.ov_predict(xml)(task.test.inputs), q(*task.test.inputs).detach()
    assert float((out.argmax(1) == sim.argmax(1)).float().mean()) >= 0.98


@needs_ov
def test_auto_judges_both_runtimes(digits, tmp_path):
    task, fp32, q, steps = _quantized(digits)
    info = export_deployed(q, steps, task, tmp_path / "model.onnx", reference=fp32, target=DeployTarget())
    rows = [c for c in info["quantize"]["candidates"] if "error" not in c]
    expected = {"onnxruntime", "openvino"} | ({"executorch"} if etr.executorch_available() else set())
    assert {c["runtime"] for c in rows} == expected
    ov = [c for c in rows if c["runtime"] == "openvino"]
    assert any(c["format"] == "float" and c["precision"] == "f32" for c in ov)
    assert all(c["executed_layers"].get("int8") for c in ov if c["format"] != "float")  # graph-checked
    assert (tmp_path / "model.xml").is_file() == (info["shipped"]["runtime"] == "openvino")


def test_onnxruntime_only(digits, tmp_path):
    task, fp32, q, steps = _quantized(digits)
    info = export_deployed(q, steps, task, tmp_path / "model.onnx", reference=fp32,
                           target=DeployTarget(runtime="onnxruntime"))
    assert {c.get("runtime") for c in info["quantize"]["candidates"]} == {"onnxruntime"}
    assert info["shipped"]["runtime"] == "onnxruntime" and not (tmp_path / "model.xml").exists()


def test_without_openvino_auto_is_onnxruntime_with_a_note(digits, tmp_path, monkeypatch):
    monkeypatch.setattr(ovr, "openvino_available", lambda: False)
    monkeypatch.setattr(etr, "executorch_available", lambda: False)
    task, fp32, q, steps = _quantized(digits)
    info = export_deployed(q, steps, task, tmp_path / "model.onnx", reference=fp32, target=DeployTarget())
    assert info["shipped"]["runtime"] == "onnxruntime"
    assert any("not installed" in n for n in info["quantize"]["openvino_notes"])


@needs_ov
def test_a_plain_model_gets_a_runtime_choice(digits, tmp_path):
    """No deploy hook (a recipe without quantize): the runtime choice times the graph in both."""
    task, fp32 = digits
    info = export_deployed(fp32, [], task, tmp_path / "model.onnx", reference=fp32,
                           target=DeployTarget(runtime="openvino"))
    choice = info["runtime"]
    assert choice["runtime"] == "openvino" and info["shipped"]["runtime"] == "openvino"
    names = [c["name"] for c in choice["candidates"]]
    assert names == [f"openvino {p}" for p in ("f32", *ovr.sixteen_bit_precisions())]
    assert info["shipped"]["precision"] == choice["precision"]
    out = ovr.ov_predict(tmp_path / "model.xml")(task.test.inputs)
    with torch.no_grad():
        ref = fp32(*task.test.inputs)
    assert float((out.argmax(1) == ref.argmax(1)).float().mean()) >= 0.99


@needs_ov
def test_static_in_the_simulations_scope_is_an_openvino_candidate(digits, tmp_path):
    """Linear-only int8-static: the static-matmul graph (Q/DQ into the quantized layers only) is judged in
    OpenVINO, never in onnxruntime, and runs all three layers in int8 at the simulation's agreement."""
    task, fp32, q, steps = _quantized(digits)
    info = export_deployed(q, steps, task, tmp_path / "model.onnx", reference=fp32, target=DeployTarget())
    rows = [c for c in info["quantize"]["candidates"] if c.get("format") == "static-matmul"]
    assert rows and all("error" not in c and c["runtime"] == "openvino" for c in rows)
    assert all(c["executed_layers"] == {"int8": 3} and c["label"] == "int8-static" for c in rows)
    sim = info["quantize"]["simulation_fidelity"]["agreement"]
    assert all(c["fidelity"]["agreement"] >= sim - 0.004 for c in rows)
    ort = export_deployed(q, steps, task, tmp_path / "ort" / "model.onnx", reference=fp32,
                          target=DeployTarget(runtime="onnxruntime"))
    assert not any(c.get("format") == "static-matmul" for c in ort["quantize"]["candidates"])
