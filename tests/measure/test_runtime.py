"""onnxruntime predict: same outputs as torch, any batch, clear errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from modelpress.artifact.onnx import export_onnx
from modelpress.errors import BadInputError, CompressionError
from modelpress.measure.runtime import ort_predict


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)).eval()
    folder = tmp_path_factory.mktemp("ort")
    dynamic = export_onnx(model, (torch.randn(1, 1, 8, 8),), folder / "dyn.onnx")
    fixed = export_onnx(model, (torch.randn(4, 1, 8, 8),), folder / "fixed.onnx", dynamic_batch=False)
    return model, dynamic, fixed


@pytest.mark.parametrize("n", [1, 3, 300])  # 300 > the 256-row chunk
@pytest.mark.parametrize("which", ["dynamic", "fixed"])
def test_matches_torch_at_any_batch(exported, n, which):
    model, dynamic, fixed = exported
    predict = ort_predict(dynamic if which == "dynamic" else fixed)
    x = torch.randn(n, 1, 8, 8)
    out = predict((x,))
    assert out.shape == (n, 10)
    torch.testing.assert_close(out, model(x).detach(), atol=1e-5, rtol=1e-5)


def test_missing_file(tmp_path):
    with pytest.raises(BadInputError, match="does not exist"):
        ort_predict(tmp_path / "nope.onnx")


def test_not_onnx(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not a protobuf")
    with pytest.raises(BadInputError, match="ONNX model"):
        ort_predict(bad)


def test_valid_onnx_that_onnxruntime_cannot_run(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("Bar", ["x"], ["y"], domain="no.such.domain")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("no.such.domain", 1)]
    )
    path = tmp_path / "custom.onnx"
    onnx.save(model, str(path))
    with pytest.raises(CompressionError, match="onnxruntime cannot load"):
        ort_predict(path)


def test_wrong_number_of_inputs(exported):
    predict = ort_predict(exported[1])
    with pytest.raises(BadInputError, match="takes 1 inputs"):
        predict((torch.randn(2, 1, 8, 8), torch.randn(2, 1, 8, 8)))


def test_bad_threads(exported):
    with pytest.raises(BadInputError):
        ort_predict(exported[1], threads=0)
