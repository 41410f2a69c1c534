"""Quantization uses the one targeting rule: subclasses are quantized (a custom forward is kept), layers
it cannot handle are reported as skipped, every swap is recorded."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from modelpress.artifact.onnx import export_onnx
from modelpress.context import StepContext
from modelpress.measure.runtime import ort_predict
from modelpress.quantization import QuantConv2d, Quantize, QuantLinear, apply_quantize
from modelpress.quantization.wrapped import KeepForward
from modelpress.tasks.task import Task
from modelpress.tasks.train import evaluate, torch_predict, train
from tests.custom_layers import MatmulLayer, SameConv2d


class PlainSubLinear(nn.Linear):
    """A subclass that changes nothing about forward (swapped like an nn.Linear)."""


class SameNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = SameConv2d(1, 16, 4)  # an even kernel: the padding is asymmetric, Conv2d's own cannot do it
        self.c2 = SameConv2d(16, 16, 3, stride=2)
        self.mix = MatmulLayer(16 * 4 * 4)
        self.fc1 = PlainSubLinear(16 * 4 * 4, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.c2(torch.relu(self.c1(x))))
        return self.fc2(torch.relu(self.fc1(self.mix(x.flatten(1)))))


@pytest.fixture(scope="module")
def same(digits_task: Task) -> nn.Module:
    torch.manual_seed(0)
    m = SameNet()
    train(m, digits_task.train, digits_task.loss, epochs=6, lr=3e-3, progress=False)
    return m.eval()


def test_same_padding_subclass_is_quantized_and_keeps_its_forward(same, digits_task, tmp_path):
    model = copy.deepcopy(same)
    base = evaluate(model, digits_task)
    log = apply_quantize(model, Quantize(mode="int8-static"), StepContext(task=digits_task, progress=False))
    assert base >= 0.9  # the reference the drops below are stated against
    assert isinstance(model.c1, KeepForward) and isinstance(model.c1.inner, SameConv2d)
    assert isinstance(model.fc1, QuantLinear) and isinstance(model.fc2, QuantLinear)
    assert {(s.module, s.from_type, s.to_type) for s in log.swapped} == {
        ("c1", "SameConv2d", "KeepForward"), ("c2", "SameConv2d", "KeepForward"),
        ("fc1", "PlainSubLinear", "QuantLinear"), ("fc2", "Linear", "QuantLinear")}
    assert log.details["layers_quantized"] == 4 and log.details["kept_forward"] == ["c1", "c2"]
    assert [s.module for s in log.skipped] == ["mix"] and "MatmulLayer" in log.skipped[0].why
    # the padding survived: the output shapes are the float model's, and int8 costs at most 2 points
    x = digits_task.test.inputs[0][:8]
    assert model.c1(x).shape == same.c1(x).shape == (8, 16, 8, 8)
    assert base - evaluate(model, digits_task) <= 0.02
    # the weights the conv sees are on the int8 grid: at most 255 distinct values per output channel
    w = model.c1.inner.weight
    assert all(len(torch.unique(w[o])) <= 255 for o in range(w.shape[0]))
    assert w is model.c1.weight and "weight" not in dict(model.c1.inner.named_parameters())
    assert sorted(model.c1.state_dict()) == ["inner.bias", "qweight", "scale", "zero_point"]  # codes, once
    # the exported graph is a padded standard conv with the on-grid weights, and agrees with torch
    path = export_onnx(model, digits_task.example_inputs, tmp_path / "m.onnx")
    import onnx

    graph = onnx.load(str(path)).graph
    ops = [n.op_type for n in graph.node]
    assert ops.count("Conv") == 2 and "Pad" in ops
    out_ort = ort_predict(path)(digits_task.test.inputs)
    with torch.no_grad():
        ref = torch_predict(model)(digits_task.test.inputs)
    # ONNX runs the float graph with on-grid weights (no activation rounding): within 0.3 logits on average
    assert float((out_ort - ref).abs().mean()) <= 0.3


def test_kept_layers_are_counted_like_any_other(same, digits_task):
    from modelpress.measure.macs import count_macs
    from modelpress.measure.size import count_params

    model = copy.deepcopy(same)
    apply_quantize(model, Quantize(mode="int8-weight"), StepContext(progress=False))
    x = digits_task.example_inputs
    # params: every weight once, the codes standing for the convs' weights (c1 16·1·4·4 + 16, c2 16·16·3·3
    # + 16, mix 256², fc1 256·32 + 32, fc2 32·10 + 10); MACs of the padded convs as in the float model
    assert count_params(model)[0] == count_params(same)[0] == 272 + 2320 + 65536 + 8224 + 330
    assert count_macs(model, x) == count_macs(same, x) > 0


def test_to_dense_is_the_same_layer_with_on_grid_weights(same):
    model = copy.deepcopy(same)
    apply_quantize(model, Quantize(mode="int8-weight"), StepContext(progress=False))
    dense = model.c1.to_dense()
    assert type(dense) is SameConv2d and isinstance(dense.weight, nn.Parameter)
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(dense(x), model.c1(x), rtol=0, atol=0)
    assert isinstance(same.c1, SameConv2d) and same.c1.weight.requires_grad  # the source model untouched


def test_gru_and_custom_layers_are_skipped_with_the_reason():
    net = nn.Sequential(nn.Linear(4, 4), nn.GRU(4, 4))
    log = apply_quantize(net, Quantize(mode="int8-dynamic"), StepContext(progress=False))
    assert [(s.module, s.from_type) for s in log.swapped] == [("0", "Linear")]
    assert [s.module for s in log.skipped] == ["1"] and "GRU" in log.skipped[0].why


def test_qat_skips_a_custom_forward_rather_than_drop_it(same, digits_task):
    model = copy.deepcopy(same)
    cfg = Quantize(mode="qat", epochs=1)
    log = apply_quantize(model, cfg, StepContext(task=digits_task, progress=False))
    why = {s.module: s.why for s in log.skipped}
    assert "own forward" in why["c1"] and isinstance(model.c1, SameConv2d)
    assert isinstance(model.fc1, QuantLinear)



def test_same_padding_layers_deploy_with_integer_convs(same, digits_task, tmp_path):
    import onnx

    from modelpress.quantization import deploy_quantize

    model = copy.deepcopy(same)
    cfg = Quantize(mode="int8-static", deploy="static")
    apply_quantize(model, cfg, StepContext(task=digits_task, progress=False))
    path = export_onnx(model, digits_task.example_inputs, tmp_path / "m.onnx")
    details = deploy_quantize(path, model, cfg, StepContext(task=digits_task, progress=False))
    assert details["candidate"] == "static" and details["matched_layers"] == 4
    # the label is read off the graph: int8 static layers, and the custom layer left float as reported
    assert details["format"] == "int8-static+float32"
    assert details["float_nodes"] == ["/mix/MatMul"]
    graph = onnx.load(str(path)).graph
    made_by = {o: n for n in graph.node for o in n.output}
    inits = {t.name: t for t in graph.initializer}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert len(convs) == 2
    for conv in convs:  # each conv reads int8 weights through DequantizeLinear: QLinearConv in onnxruntime
        dq = made_by[conv.input[1]]
        assert dq.op_type == "DequantizeLinear" and inits[dq.input[0]].data_type == onnx.TensorProto.INT8
        assert made_by[conv.input[0]].op_type == "DequantizeLinear"
    deployed = digits_task.metric(ort_predict(path), digits_task.test)
    assert abs(deployed - evaluate(model, digits_task)) <= 0.01


def test_keep_forward_packs_and_unpacks_bit_exactly_and_refuses_a_users_class():
    from modelpress.errors import BadInputError
    from modelpress.quantization.modules import WeightSpec

    kf, (x,) = KeepForward.example()
    tensors, meta = kf.pack()
    assert sorted(tensors) == ["qweight", "scale"] and meta["inner_class"] == "torch.nn.modules.conv:Conv2d"
    back = KeepForward.unpack(tensors, meta)
    back.load_state_dict({k: v for k, v in kf.state_dict().items() if k.startswith("inner.")}, strict=False)
    assert torch.equal(back(x), kf(x)) and torch.equal(back.to_dense()(x), kf(x))
    conv = SameConv2d(1, 2, 3)
    user = KeepForward.wrap(conv, QuantConv2d.from_float(conv, WeightSpec()))
    with pytest.raises(BadInputError, match="SameConv2d"):
        KeepForward.unpack(*user.pack())


def test_a_later_step_leaves_the_kept_layer_alone(same):
    model = copy.deepcopy(same)
    apply_quantize(model, Quantize(mode="int8-weight"), StepContext(progress=False))
    log = apply_quantize(model, Quantize(mode="int8-weight"), StepContext(progress=False))
    assert log.swapped == [] and isinstance(model.c1.inner, SameConv2d)


def test_16_bit_modes_skip_a_custom_forward_with_the_reason(same):
    model = copy.deepcopy(same)
    log = apply_quantize(model, Quantize(mode="fp16"), StepContext(progress=False))
    why = {s.module: s.why for s in log.skipped}
    assert "own forward" in why["c1"] and isinstance(model.c1, SameConv2d)


def test_batchnorm_after_a_same_padding_conv_is_folded_exactly():
    from modelpress.quantization.fold import FoldedBatchNorm, fold_batchnorm

    torch.manual_seed(0)
    model = nn.Sequential(SameConv2d(1, 4, 4), nn.BatchNorm2d(4), nn.ReLU()).eval()
    with torch.no_grad():
        model[1].running_mean.uniform_(-1, 1)
        model[1].running_var.uniform_(0.5, 2)
        model[1].weight.uniform_(0.5, 2)
    x = torch.randn(3, 1, 8, 8)
    before = model(x)
    assert fold_batchnorm(model) == [("0", "1")] and isinstance(model[1], FoldedBatchNorm)
    torch.testing.assert_close(model(x), before, rtol=1e-5, atol=1e-5)
