"""Weight-only int8 ONNX (codes + DequantizeLinear): exact against the float export, int8 in OpenVINO."""

from __future__ import annotations

import copy
from collections import Counter

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from modelpress.artifact.onnx import export_onnx
from modelpress.context import StepContext
from modelpress.measure import openvino_runtime as ovr
from modelpress.measure.runtime import ort_predict
from modelpress.quantization import Quantize, apply_quantize
from modelpress.quantization.onnx_rewrite import match_layers
from modelpress.quantization.onnx_weight_dq import to_weight_dequantize


def _quantized(trained, task, tmp_path, **kw):
    q = copy.deepcopy(trained)
    apply_quantize(q, Quantize(**kw), StepContext(task=task, progress=False))
    path = export_onnx(q, task.example_inputs, tmp_path / "q.onnx")
    return q, path


@pytest.mark.parametrize("granularity", ["channel", "tensor"])
def test_exact_against_the_float_export(trained, digits_task, tmp_path, granularity):
    q, path = _quantized(trained, digits_task, tmp_path, mode="int8-weight", granularity=granularity)
    src = onnx.load(str(path))
    new, left = to_weight_dequantize(src, match_layers(src, q))
    assert left == []
    ops = Counter(n.op_type for n in new.graph.node)
    assert ops["DequantizeLinear"] == 4  # two convs (BatchNorm folded) and two Linear layers
    ints = [t for t in new.graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) >= 2]
    assert len(ints) == 4
    # DequantizeLinear's (q - zero_point) · scale gives the exported fp32 weights bit for bit
    arrays = {t.name: numpy_helper.to_array(t) for t in new.graph.initializer}
    before = {t.name: numpy_helper.to_array(t) for t in src.graph.initializer}
    for node in (n for n in new.graph.node if n.op_type == "DequantizeLinear"):
        q, s, z = (arrays[i] for i in node.input)
        axis = node.attribute[0].i
        shape = [1] * q.ndim
        if s.ndim:
            shape[axis] = -1
        dq = (q.astype(np.int32) - z.astype(np.int32).reshape(shape)).astype(np.float32) * s.reshape(shape)
        assert np.array_equal(dq, before[node.output[0]])
    dst = tmp_path / "wdq.onnx"
    onnx.save(new, str(dst))
    x = digits_task.test.inputs
    ref = ort_predict(path)(x)  # kernels may differ (onnxruntime fuses the DequantizeLinear): f32 round-off
    assert float((ort_predict(dst)(x) - ref).abs().max()) <= 1e-5 * (1 + float(ref.abs().max()))
    assert dst.stat().st_size < 0.4 * path.stat().st_size


@pytest.mark.skipif(not ovr.openvino_available(), reason="openvino is not installed")
def test_openvino_runs_the_weights_in_int8(trained, digits_task, tmp_path):
    q, path = _quantized(trained, digits_task, tmp_path, mode="int8-dynamic")
    src = onnx.load(str(path))
    new, _ = to_weight_dequantize(src, match_layers(src, q))
    dst = tmp_path / "wdq.onnx"
    onnx.save(new, str(dst))
    compiled = ovr.compile_openvino(ovr.to_ir(dst, tmp_path / "wdq.xml"), precision="f32")
    assert ovr.executed_format(compiled).layers.get("int8", 0) >= 2  # the Linear layers at least
    x = digits_task.test.inputs
    ref = q(*x).detach()  # the int8-dynamic simulation
    agree = (ovr.predict_compiled(compiled)(x).argmax(1) == ref.argmax(1)).float().mean()
    assert float(agree) >= 0.98


def test_four_bit_layers_are_left_with_a_reason(trained, digits_task, tmp_path):
    q, path = _quantized(trained, digits_task, tmp_path, mode="int4-weight")
    src = onnx.load(str(path))
    with pytest.raises(ValueError, match="no 8-bit .* 4-bit weights"):
        to_weight_dequantize(src, match_layers(src, q))
