"""ONNX file size and parameter counts: fp32 exports count like torch, int8 weights once."""

from __future__ import annotations

import onnx
import pytest
import torch

from modelpress.artifact.onnx import export_onnx
from modelpress.errors import BadInputError
from modelpress.measure.onnx_size import onnx_bytes, onnx_params


@pytest.fixture(scope="module")
def lenet_onnx(tmp_path_factory):
    from modelpress.tasks.models import build

    torch.manual_seed(0)
    model = build("lenet-300-100")
    with torch.no_grad():
        model.fc1.weight.view(-1)[:1000] = 0.0
    path = export_onnx(model, (torch.randn(1, 1, 28, 28),), tmp_path_factory.mktemp("onnx") / "lenet.onnx")
    return path


def test_fp32_counts_like_torch(lenet_onnx):
    assert onnx_params(lenet_onnx) == (266_610, 266_610 - 1000)


def test_size_is_the_file(lenet_onnx):
    assert onnx_bytes(lenet_onnx) == lenet_onnx.stat().st_size
    assert onnx_bytes(lenet_onnx) > 266_610 * 4


def test_external_data_is_counted(lenet_onnx, tmp_path):
    model = onnx.load(str(lenet_onnx))
    out = tmp_path / "ext.onnx"
    onnx.save_model(model, str(out), save_as_external_data=True, location="ext.data", size_threshold=0)
    total = out.stat().st_size + (tmp_path / "ext.data").stat().st_size
    assert onnx_bytes(out) == total
    assert (tmp_path / "ext.data").stat().st_size >= 266_610 * 4
    assert onnx_params(out) == (266_610, 266_610 - 1000)


def test_dynamic_int8_counts_each_weight_once(lenet_onnx, tmp_path):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = tmp_path / "int8.onnx"
    quantize_dynamic(str(lenet_onnx), str(out), weight_type=QuantType.QInt8, per_channel=True)
    n, nz = onnx_params(out)
    assert n == 266_610  # int8 weights + fp32 biases; scales and zero points are not params
    # the 1000 planted zeros stay zero (symmetric int8: zero point 0), small weights may round to 0 too
    assert nz <= 266_610 - 1000
    assert out.stat().st_size < lenet_onnx.stat().st_size / 3


def test_missing_and_garbage(tmp_path):
    with pytest.raises(BadInputError):
        onnx_bytes(tmp_path / "none.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00\x01garbage")
    with pytest.raises(BadInputError):
        onnx_params(junk)


def test_matmul_nbits_counts_codes_not_bytes_or_scales(tmp_path):
    """A 4-bit LeNet-300-100 as MatMulNBits (two codes per byte, 300 / 100 inputs padded to blocks of 32):
    the deployed file counts the torch model's 266,610 params, and the planted zero rows as zeros."""
    from modelpress.context import StepContext
    from modelpress.quantization import Quantize, apply_quantize
    from modelpress.quantization.deploy import deploy_onnx
    from modelpress.tasks.models import build

    torch.manual_seed(0)
    model = build("lenet-300-100")
    with torch.no_grad():
        model.fc2.weight[:10] = 0.0  # 10 rows of 300 inputs: 3000 zeros
    cfg = Quantize(mode="int4-weight", symmetric=False, deploy="nbits")
    apply_quantize(model, cfg, StepContext())
    path = export_onnx(model.eval(), (torch.randn(1, 1, 28, 28),), tmp_path / "m.onnx")
    assert deploy_onnx(path, model, cfg, StepContext())["format"] == "int4-weight"
    n, nz = onnx_params(path)
    layers = (model.fc1, model.fc2, model.fc3)
    assert n == 266_610
    # a code equal to its zero point is a weight of exactly 0.0
    assert nz == sum(int(torch.count_nonzero(m.weight)) + int(torch.count_nonzero(m.bias)) for m in layers)
    assert 266_610 - nz >= 3000
