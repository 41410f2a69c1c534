"""The Quantize step end to end on a small CNN: PTQ, QAT, mixed precision, ONNX deployment, errors."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from modelpress.artifact import folder_bytes, load, save
from modelpress.artifact.onnx import export_onnx
from modelpress.context import DeployTarget, StepContext
from modelpress.errors import BadInputError
from modelpress.measure.runtime import ort_predict
from modelpress.quantization import QuantConv2d, Quantize, QuantLinear, apply_quantize, deploy_quantize
from modelpress.quantization.fold import FoldedBatchNorm, fold_batchnorm
from modelpress.quantization.ptq import calibration_split
from modelpress.tasks.models import build
from modelpress.tasks.task import Split
from modelpress.tasks.train import evaluate, torch_predict


def _deploy(model, config, task, tmp_path):
    path = export_onnx(model, task.example_inputs, tmp_path / "m.onnx")
    # these tests are about the onnxruntime forms (OpenVINO's are tested in tests/pipeline/test_deploy_openvino.py)
    target = DeployTarget(runtime="onnxruntime")
    details = deploy_quantize(path, model, config, StepContext(task=task, progress=False, target=target))
    return path, details


def test_batchnorm_folding_keeps_outputs(trained, digits_task, tmp_path):
    x = digits_task.test.inputs[0][:32]
    ref = trained(x)
    pairs = fold_batchnorm(trained)
    assert pairs == [("c1", "b1"), ("c2", "b2")]
    assert isinstance(trained.b1, FoldedBatchNorm)
    assert torch.allclose(trained(x), ref, atol=1e-5)
    # a folded built-in model saves and loads (the BatchNorm → identity swap is recorded)
    net = build("resnet-s", input_shape=(1, 8, 8), num_classes=10).eval()
    with torch.no_grad():
        ref = net(x)
    assert len(fold_batchnorm(net)) >= 3
    assert torch.allclose(net(x), ref, atol=1e-4)
    assert torch.equal(load(save(net, tmp_path / "folded")).eval()(x), net(x))


def test_int8_static_ptq_and_deployment_agree(trained, digits_task, tmp_path):
    base = evaluate(trained, digits_task)
    cfg = Quantize(mode="int8-static", observer="percentile", percentile=99.99)
    log = apply_quantize(trained, cfg, StepContext(task=digits_task, progress=False))
    assert log.details["layers_quantized"] == 4 and log.details["batchnorm_folded"] == ["c1 <- b1", "c2 <- b2"]
    assert isinstance(trained.c1, QuantConv2d) and trained.c1.act == "static"
    sim = evaluate(trained, digits_task)
    assert base - sim <= 0.02
    path, details = _deploy(trained, cfg, digits_task, tmp_path)
    assert details["candidate"] in {c["name"] for c in details["candidates"]} and details["why"]
    deployed = digits_task.metric(ort_predict(path), digits_task.test)
    # stated tolerance: deployed accuracy within 1 point of the simulation, logits within 0.5
    assert abs(deployed - sim) <= 0.01
    out_ort = ort_predict(path)(digits_task.test.inputs)
    out_sim = torch_predict(trained)(digits_task.test.inputs)
    assert float((out_ort - out_sim).abs().mean()) <= 0.5


def test_static_deployment_quantizes_for_real(trained, digits_task, tmp_path):
    import onnx

    cfg = Quantize(mode="int8-static", deploy="static")
    apply_quantize(trained, cfg, StepContext(task=digits_task, progress=False))
    path, details = _deploy(trained, cfg, digits_task, tmp_path)
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    if details["candidate"] == "static":
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops and details["format"] == "int8-static"
    assert abs(digits_task.metric(ort_predict(path), digits_task.test) - evaluate(trained, digits_task)) <= 0.01


def test_int4_weight_matmul_nbits_matches_simulation_exactly(trained, digits_task, tmp_path):
    cfg = Quantize(mode="int4-weight", deploy="nbits", symmetric=False)
    apply_quantize(trained, cfg, StepContext(task=digits_task, progress=False))
    assert isinstance(trained.fc1, QuantLinear) and trained.fc1.spec.bits == 4
    path, details = _deploy(trained, cfg, digits_task, tmp_path)
    assert details["candidate"] == "nbits" and details["format"] == "int4-weight+float32"  # convs stay float
    x = digits_task.test.inputs
    assert torch.allclose(ort_predict(path)(x), torch_predict(trained)(x), atol=1e-4)


def test_fp16_is_storage_and_says_so(trained, digits_task, tmp_path):
    cfg = Quantize(mode="fp16")
    log = apply_quantize(trained, cfg, StepContext(task=digits_task, progress=False))
    assert "storage format" in log.details["note"]
    assert set(log.details["compute_16bit_vs_fp32"]) == {"bf16", "fp16"}  # measured here, not assumed
    path, details = _deploy(trained, cfg, digits_task, tmp_path)
    assert "slower" in details["note"]
    assert details["format"] == "fp16"  # the convs too: the exporter folds their BatchNorm, they are matched
    x = digits_task.test.inputs
    # folded conv weights are rounded to fp16 after folding: 1e-3-level differences to torch
    assert torch.allclose(ort_predict(path)(x), torch_predict(trained)(x), atol=5e-3)


def test_max_drop_keeps_the_planted_sensitive_layer_float(trained, digits_task):
    # Plant an outlier: one fc1 output row ×1000, its fc2 input column ÷1000 — the function is unchanged,
    # but fc1's per-tensor 4-bit grid now rounds every other row to zero.
    with torch.no_grad():
        trained.fc1.weight[7] *= 1000
        trained.fc1.bias[7] *= 1000
        trained.fc2.weight[:, 7] /= 1000
    base = evaluate(trained, digits_task)
    cfg = Quantize(mode="int4-weight", granularity="tensor", max_drop=0.01)
    log = apply_quantize(trained, cfg, StepContext(task=digits_task, progress=False))
    assert log.details["sensitivity"][0]["module"] == "fc1"
    assert [k["module"] for k in log.details["kept_float"]][:1] == ["fc1"]
    assert type(trained.fc1) is nn.Linear and isinstance(trained.fc2, QuantLinear)
    assert log.details["calibration_drop"] <= 0.01
    assert base - evaluate(trained, digits_task) <= 0.03


@pytest.mark.parametrize("bits,learn", [(4, False), (8, True)])
def test_qat_converts_to_the_ptq_modules(trained, digits_task, bits, learn):
    base = evaluate(trained, digits_task)
    cfg = Quantize(mode="qat", bits=bits, epochs=1, lr=5e-4, learn_ranges=learn)
    log = apply_quantize(trained, cfg, StepContext(task=digits_task, progress=False))
    assert len(log.details["qat_losses"]) == 1
    assert isinstance(trained.c2, QuantConv2d) and trained.c2.spec.bits == bits
    assert isinstance(trained.fc2, QuantLinear) and trained.fc2.act == ("static" if bits == 8 else "none")
    assert base - evaluate(trained, digits_task) <= 0.02


def test_artifact_sizes_drop_for_real(tmp_path):
    sizes = {}
    for mode in ("fp32", "int8-dynamic", "int4-weight"):
        m = build("lenet-5")
        if mode != "fp32":
            apply_quantize(m, Quantize(mode=mode), StepContext())
        sizes[mode] = folder_bytes(save(m, tmp_path / mode))
    assert sizes["int8-dynamic"] / sizes["fp32"] <= 0.27
    assert sizes["int4-weight"] / sizes["fp32"] <= 0.16
    m = build("lenet-5").eval()
    apply_quantize(m, Quantize(mode="int4-weight", symmetric=False), StepContext())
    r = load(save(m, tmp_path / "again")).eval()
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(r(x), m(x))


def test_clear_errors(trained, digits_task):
    with pytest.raises(BadInputError, match="bits"):
        Quantize(mode="qat", bits=3)
    with pytest.raises(BadInputError, match="bits"):
        Quantize(mode="int8-static", bits=16)
    with pytest.raises(BadInputError, match="group_size"):
        Quantize(mode="int4-weight", group_size=48)
    with pytest.raises(BadInputError, match="mode"):
        Quantize(mode="int2")
    with pytest.raises(BadInputError, match="`schedule` of `Quantize`"):
        Quantize(mode="qat", schedule="step")
    with pytest.raises(BadInputError, match="needs data"):
        apply_quantize(copy.deepcopy(trained), Quantize(mode="int8-static"), StepContext())
    with pytest.raises(BadInputError, match="calibration"):
        calibration_split(None, 10)
    with pytest.raises(BadInputError, match="empty"):
        Split((torch.zeros(0, 1, 8, 8),), torch.zeros(0, dtype=torch.long), "calibration")


class _Tiny3d(nn.Module):
    """Linear layers on (n, tokens, features) input: exported as MatMul with transposed weights."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(32, 64)
        self.b = nn.Linear(64, 64)
        self.c = nn.Linear(64, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(torch.relu(self.b(torch.relu(self.a(x))))).mean(1)


def test_dynamic_deployment_leaves_float_layers_float(tmp_path):
    import onnx

    from modelpress.select import exclude

    torch.manual_seed(0)
    m = _Tiny3d().eval()
    cfg = Quantize(mode="int8-dynamic", deploy="dynamic")
    apply_quantize(m, cfg, StepContext(select=exclude("b")))
    assert isinstance(m.a, QuantLinear) and type(m.b) is nn.Linear
    x = torch.randn(3, 7, 32)
    path = export_onnx(m, (x[:1],), tmp_path / "t.onnx")
    details = deploy_quantize(path, m, cfg, StepContext())
    assert details["candidate"] == "dynamic" and details["matched_layers"] == 2
    assert details["format"] == "int8-dynamic+float32"  # the label is read from the shipped graph
    nodes = onnx.load(str(path)).graph.node
    assert sum(n.op_type == "MatMul" for n in nodes) == 1  # b stays a float MatMul
    assert len(details["float_nodes"]) == 1
    # dynamic int8 in onnxruntime vs the simulation (per-tensor uint8 activations, s8 per-channel weights)
    assert torch.allclose(ort_predict(path)(x), m(x), atol=2e-2)


def test_pruned_parametrized_layers_are_quantized_with_zeros_kept(trained, multiply_mask):
    mask = (torch.rand_like(trained.fc1.weight) > 0.5).float()
    multiply_mask(trained.fc1, mask)
    apply_quantize(trained, Quantize(mode="int8-dynamic"), StepContext())
    assert isinstance(trained.fc1, QuantLinear)
    assert bool((trained.fc1.qweight[mask == 0] == 0).all())
