"""The command line with OpenVINO: evaluate an IR, --runtime openvino, and a clear error without it."""

from __future__ import annotations

import pytest
import torch

from modelpress.cli import main
from modelpress.measure import openvino_runtime as ovr

needs_ov = pytest.mark.skipif(not ovr.openvino_available(), reason="openvino is not installed")


@pytest.fixture(scope="module")
def digits_ir(tmp_path_factory):
    """An IR of the built-in digits LeNet-300-100 (random weights: the figures are not the point here)."""
    from modelpress.artifact.onnx import export_onnx
    from modelpress.tasks.models import build

    torch.manual_seed(0)
    model = build("lenet-300-100", input_shape=(1, 8, 8), num_classes=10).eval()
    folder = tmp_path_factory.mktemp("cli-ov")
    onnx_path = export_onnx(model, (torch.zeros(1, 1, 8, 8),), folder / "model.onnx")
    return onnx_path, ovr.to_ir(onnx_path, folder / "model.xml")


@needs_ov
def test_evaluate_an_ir(digits_ir, capsys):
    assert main(["evaluate", "--task", "digits", "--model", str(digits_ir[1]), "--runs", "3"]) == 0
    out = capsys.readouterr().out
    assert "runtime openvino f32" in out and "n/a (not counted" in out  # an IR alone has no MAC counter


@needs_ov
def test_evaluate_onnx_in_openvino(digits_ir, capsys):
    args = ["evaluate", "--task", "digits", "--model", str(digits_ir[0]), "--runtime", "openvino", "--runs", "3"]
    assert main(args) == 0
    assert "runtime openvino f32" in capsys.readouterr().out


@needs_ov
def test_ir_of_another_shape_is_bad_input(tmp_path, capsys):
    from modelpress.artifact.onnx import export_onnx

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)).eval()
    xml = ovr.to_ir(export_onnx(model, (torch.zeros(1, 1, 28, 28),), tmp_path / "m.onnx"), tmp_path / "m.xml")
    assert main(["evaluate", "--task", "digits", "--model", str(xml), "--runs", "2"]) == 2
    assert "has shape [?,1,28,28]; got [" in capsys.readouterr().err


def test_missing_ir_is_bad_input(tmp_path, capsys):
    assert main(["evaluate", "--task", "digits", "--model", str(tmp_path / "model.xml")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("args", [["--runtime", "openvino"], ["--model", "IR"]])
def test_openvino_absent_is_exit_2(monkeypatch, tmp_path, capsys, args):
    monkeypatch.setattr(ovr, "openvino_available", lambda: False)
    xml = tmp_path / "model.xml"  # never read: the missing runtime is found first
    xml.write_text("<net/>")
    xml.with_suffix(".bin").write_bytes(b"")
    args = [str(xml) if a == "IR" else a for a in args]
    assert main(["evaluate", "--task", "digits", *args]) == 2
    err = capsys.readouterr().err
    assert "needs OpenVINO, which is not installed. Fix: pip install 'modelpress[openvino]'" in err


def test_compress_runtime_openvino_absent_is_exit_2(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(ovr, "openvino_available", lambda: False)
    args = ["compress", "--task", "digits", "--recipe", "int8-static", "--out", str(tmp_path / "o"),
            "--runtime", "openvino"]
    assert main(args) == 2
    assert "`runtime openvino` needs OpenVINO, which is not installed" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # nothing was written


def test_measure_settings_runtime():
    from modelpress.errors import BadInputError
    from modelpress.pipeline import MeasureSettings

    assert MeasureSettings().runtime == "auto"
    with pytest.raises(BadInputError, match="`runtime` of `MeasureSettings` must be one of"):
        MeasureSettings(runtime="tensorrt")


@needs_ov
def test_compress_with_runtime_openvino_then_evaluate_the_ir(tmp_path, capsys):
    import json

    out = tmp_path / "o"
    args = ["compress", "--task", "digits", "--recipe", "int8-static", "--out", str(out), "--runtime", "openvino",
            "--runs", "3"]
    assert main(args) == 0
    assert f"{out}/model.xml, {out}/model.bin" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    shipped = report["deploy"]["shipped"]
    assert shipped["runtime"] == "openvino" and shipped["file"] == "model.xml"
    assert report["deployed"]["runtime"].startswith("openvino ")
    assert report["deployed"]["size_bytes"] == ovr.ir_bytes(out / "model.xml") == shipped["bytes"]
    assert main(["evaluate", "--task", "digits", "--model", str(out / "model.xml"), "--runs", "3"]) == 0
    text = capsys.readouterr().out
    assert f"runtime {report['deployed']['runtime']}" in text
