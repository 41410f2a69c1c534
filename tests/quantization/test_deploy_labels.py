"""Labels come from the graph: every built-in CNN / MLP × every quantization mode ships an ONNX file that
holds what its label says, checked here by op and initializer types independently of `onnx_format`.

Weights are random (the labels do not depend on training); the task is 400 real MNIST digits, so that
static calibration and the held-out judging data are real and the file stays fast.
"""

from __future__ import annotations

import copy
from collections import Counter
from functools import cache

import onnx
import pytest
import torch
from onnx import TensorProto, helper
from torch import nn

from modelpress.artifact.onnx import export_onnx
from modelpress.context import StepContext
from modelpress.measure.onnx_graph import onnx_format
from modelpress.measure.runtime import ort_predict
from modelpress.quantization import Quantize, apply_quantize
from modelpress.quantization.deploy import deploy_onnx
from modelpress.tasks import data, metrics
from modelpress.tasks.models import build
from modelpress.tasks.task import Metric, Task

# (model, mode, forced deploy format, expected label). MatMulNBits has no conv form, so on conv models
# the convs stay float32 beside the 4-bit linears (input sizes like LeNet's 300 / 100 / 500, which no
# block size divides, are padded and stay 4-bit).
CASES = [
    ("lenet-300-100", "int8-dynamic", "dynamic", "int8-dynamic"),
    ("lenet-300-100", "int8-static", "static", "int8-static"),
    ("lenet-300-100", "int4-weight", "nbits", "int4-weight"),
    ("lenet-300-100", "fp16", "fp16", "fp16"),
    ("lenet-5", "int8-dynamic", "dynamic", "int8-dynamic"),
    ("lenet-5", "int8-static", "static-reduce-range", "int8-static"),
    ("lenet-5", "int4-weight", "nbits", "int4-weight+float32"),
    ("lenet-5", "int4-weight", "static-reduce-range", "int8-static"),
    ("lenet-5", "fp16", "fp16", "fp16"),
    ("resnet-s", "int8-dynamic", "dynamic", "int8-dynamic"),
    ("resnet-s", "int8-static", "static", "int8-static"),
    ("resnet-s", "int4-weight", "nbits", "int4-weight+float32"),
    ("resnet-s", "fp16", "fp16", "fp16"),
]


@cache
def _task() -> Task:
    s = data.mnist_5k()
    train = s.train.head(400)
    return Task("mnist-400", "400 MNIST digits", train, train.head(128), s.test.head(64),
                Metric("accuracy", metrics.accuracy), metrics.cross_entropy, lambda name=None: None, "none")


def _model(name: str) -> nn.Module:
    torch.manual_seed(0)
    model = build(name).eval()
    for m in model.modules():  # resnet-s zero-initialises its last BatchNorm per block: give convs weights
        if isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.weight, 0.5, 1.5)
    return model


def _weighted_layers(model: nn.Module) -> tuple[int, int]:
    """(Linear count, Conv2d count) of the torch model."""
    kinds = Counter(type(m) for m in model.modules())
    return kinds[nn.Linear], kinds[nn.Conv2d]


def _graph_facts(path) -> tuple[Counter, Counter, list[int]]:
    """Op types, element types of the initializers with ≥ 2 dims (weights), MatMulNBits' bits."""
    g = onnx.load(str(path)).graph
    ops = Counter(n.op_type for n in g.node)
    weights = Counter(TensorProto.DataType.Name(t.data_type) for t in g.initializer if len(t.dims) >= 2)
    bits = [helper.get_attribute_value(a) for n in g.node if n.op_type == "MatMulNBits"
            for a in n.attribute if a.name == "bits"]
    return ops, weights, bits


@pytest.mark.parametrize(("name", "mode", "fmt", "label"), CASES)
def test_shipped_onnx_holds_what_its_label_says(name, mode, fmt, label, tmp_path):
    task, ref = _task(), _model(name)
    n_linear, n_conv = _weighted_layers(ref)
    model = copy.deepcopy(ref)
    cfg = Quantize(mode=mode, deploy=fmt)
    apply_quantize(model, cfg, StepContext(task=task, progress=False))
    path = export_onnx(model, task.example_inputs, tmp_path / "m.onnx")
    details = deploy_onnx(path, model, cfg, StepContext(task=task, progress=False, reference=ref))
    assert details["candidate"] == fmt, details["why"]
    assert details["format"] == label == onnx_format(path)
    assert not [r for r in details["candidates"] if "graph check" in r.get("error", "")]
    ops, weights, bits = _graph_facts(path)
    if label == "int8-dynamic":
        assert ops["MatMulInteger"] == n_linear and ops["ConvInteger"] == n_conv
        assert ops["DynamicQuantizeLinear"] >= 1 and weights["FLOAT"] == 0
    elif label == "int8-static":
        # every weight is int8 behind a DequantizeLinear; activations pass QuantizeLinear
        assert weights["INT8"] == n_linear + n_conv and weights["FLOAT"] == 0 and ops["QuantizeLinear"] >= 1
    elif label.startswith("int4-weight"):
        assert bits == [4] * n_linear and ops["MatMul"] + ops["Gemm"] == 0 and ops["Conv"] == n_conv
    else:
        assert label == "fp16" and weights["FLOAT16"] == n_linear + n_conv and weights["FLOAT"] == 0
    # the file still computes the model: weight-only forms exactly (the same codes), int8 within its noise
    x = task.test.inputs[0][:8]
    # (resnet-s in fp16 keeps BatchNorm in torch; the exporter folds it into the convs, whose folded
    # weights are rounded to fp16 once more: 1e-3-level differences)
    atol = {"nbits": 1e-4, "fp16": 5e-3}.get(fmt, 0.1)
    assert torch.allclose(ort_predict(path)((x,)), model(x), atol=atol)


def test_a_candidate_whose_graph_lacks_its_layers_is_rejected(tmp_path):
    """The bug this guards against: quantize_dynamic handed Gemm node names wrote a float graph that was
    labelled dynamic. A 'dynamic' candidate written as a float graph must fail the graph check."""
    from modelpress.errors import CompressionError
    from modelpress.quantization.deploy import check_candidate

    model = _model("lenet-300-100")
    path = export_onnx(model, _task().example_inputs, tmp_path / "float.onnx")
    with pytest.raises(CompressionError, match="graph check: candidate `dynamic` should hold int8-dynamic 3"):
        check_candidate("dynamic", path, {"int8-dynamic": 3})
    assert check_candidate("float", path, {}) == "float32"
