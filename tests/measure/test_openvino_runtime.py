"""OpenVINO runtime: IR conversion, predicts that agree with torch per precision, the executed format.

Reference: the torch model (a LeNet-300-100 trained on digits, logits up to ~20). Tolerances: f32
execution within 1e-4 · (1 + max|logit|) of torch (float summation order only); bf16 / f16 compute
(8 / 11 mantissa bits, round-off accumulating over 3 layers) within 3% of the logit range, with at
least 99% top-1 agreement; int8 from modelpress's QDQ graph: at least 98% top-1 agreement with the same
graph in onnxruntime.
"""

from __future__ import annotations

import copy

import pytest
import torch

from modelpress.errors import BadInputError
from modelpress.measure import openvino_runtime as ovr

needs_ov = pytest.mark.skipif(not ovr.openvino_available(), reason="openvino is not installed")


def _tol(ref: torch.Tensor, rel: float) -> float:
    return rel * (1.0 + float(ref.abs().max()))


@pytest.fixture(scope="module")
def ir(digits_model, digits_task, tmp_path_factory):
    from modelpress.artifact.onnx import export_onnx

    folder = tmp_path_factory.mktemp("ov")
    onnx_path = export_onnx(digits_model, digits_task.example_inputs, folder / "model.onnx")
    return onnx_path, ovr.to_ir(onnx_path, folder / "model.xml")


@pytest.fixture(scope="module")
def reference(digits_model, digits_task):
    with torch.no_grad():
        return digits_model(*digits_task.test.inputs)


@needs_ov
def test_ir_files_and_bytes(ir):
    xml = ir[1]
    assert xml.is_file() and xml.with_suffix(".bin").is_file()
    # the f32 weights of LeNet-300-100 at 8×8 input (64-300-100-10) are all in the .bin
    assert xml.with_suffix(".bin").stat().st_size >= 4 * (64 * 300 + 300 * 100 + 100 * 10)
    assert ovr.ir_bytes(xml) == xml.stat().st_size + xml.with_suffix(".bin").stat().st_size


@needs_ov
@pytest.mark.parametrize("which", ["ir", "onnx"])
@pytest.mark.parametrize("n", [1, 3, 300])  # 300 > the 256-row chunk
def test_f32_agrees_with_torch(ir, digits_task, reference, which, n):
    onnx_path, xml = ir
    predict = ovr.ov_predict(xml if which == "ir" else onnx_path, precision="f32")
    x = tuple(t[:n] for t in digits_task.test.inputs)
    out = predict(x)
    assert out.shape == (n, 10) and out.dtype == torch.float32
    ref = reference[:n]
    assert float((out - ref).abs().max()) <= _tol(ref, 1e-4)


@needs_ov
def test_forcing_f32_executes_f32(ir):
    """The f32 hint is what a CPU without bf16 / fp16 instructions runs: every compute layer in f32."""
    fmt = ovr.executed_format(ovr.compile_openvino(ir[1], precision="f32"))
    assert fmt.precision == "f32"
    assert fmt.layers == {"f32": 3} and fmt.label == "f32"  # the three Linear layers


@needs_ov
@pytest.mark.parametrize("hint", ["bf16", "f16"])
def test_16_bit_hint(ir, digits_task, reference, hint):
    compiled = ovr.compile_openvino(ir[1], precision=hint)
    fmt = ovr.executed_format(compiled)
    if hint not in ovr.sixteen_bit_precisions():
        # the plugin lowers the hint to what this CPU has (the executed format says so), or emulates it
        # without the instructions (no capability listed): not offered either way
        assert fmt.precision != hint or ovr.CAPABILITY_16[hint] not in ovr.openvino_capabilities()
        pytest.skip(f"this CPU does not execute {hint} natively (OpenVINO ran {fmt.label})")
    assert fmt.precision == hint and fmt.layers.get(hint, 0) >= 2
    out = ovr.predict_compiled(compiled)(digits_task.test.inputs)
    diff = float((out - reference).abs().max())
    assert diff <= _tol(reference, 0.03)
    assert diff > 1e-6  # really computed in 16 bits, not f32
    assert float((out.argmax(1) == reference.argmax(1)).float().mean()) >= 0.99


@needs_ov
def test_sixteen_bit_precisions_follow_the_cpu():
    from modelpress.measure.cpu import cpu_info

    got = ovr.sixteen_bit_precisions()
    assert set(got) <= {"bf16", "f16"}
    info = cpu_info()
    if "bf16" in got:
        assert info.bf16_compute  # OpenVINO never runs bf16 on a CPU without the instructions
    if "f16" in got:
        assert info.fp16_compute


@needs_ov
def test_int8_from_modelpress_qdq_graph(ir, digits_model, digits_task, tmp_path):
    from modelpress.artifact.onnx import export_onnx
    from modelpress.context import StepContext
    from modelpress.measure.runtime import ort_predict
    from modelpress.quantization import Quantize, apply_quantize, deploy_quantize

    q = copy.deepcopy(digits_model)
    cfg = Quantize(mode="int8-static", deploy="static")  # the QDQ graph, forced
    ctx = StepContext(task=digits_task, progress=False)
    apply_quantize(q, cfg, ctx)
    path = export_onnx(q, digits_task.example_inputs, tmp_path / "q.onnx")
    deploy_quantize(path, q, cfg, ctx)
    xml = ovr.to_ir(path, tmp_path / "q.xml")
    compiled = ovr.compile_openvino(xml, precision="f32")
    assert ovr.executed_format(compiled).layers == {"int8": 3}
    x = digits_task.test.inputs
    got, ort = ovr.predict_compiled(compiled)(x), ort_predict(path)(x)
    assert float((got.argmax(1) == ort.argmax(1)).float().mean()) >= 0.98
    assert ovr.ir_bytes(xml) < 0.5 * ovr.ir_bytes(ir[1])  # int8 weights in the .bin, not f32


@needs_ov
def test_compress_to_fp16_halves_the_weights(ir, tmp_path):
    small = ovr.to_ir(ir[0], tmp_path / "h.xml", compress_to_fp16=True)
    full, half = ir[1].with_suffix(".bin").stat().st_size, small.with_suffix(".bin").stat().st_size
    assert 0.45 * full <= half <= 0.55 * full


@needs_ov
def test_bad_input(ir, tmp_path):
    with pytest.raises(BadInputError, match="does not exist"):
        ovr.ov_predict(tmp_path / "nope.xml")
    with pytest.raises(BadInputError, match="must be an OpenVINO IR"):
        ovr.ov_predict(tmp_path / "model.pt")
    with pytest.raises(BadInputError, match="`precision` of `compile_openvino` must be one of"):
        ovr.ov_predict(ir[1], precision="int8")
    with pytest.raises(BadInputError, match="`threads`"):
        ovr.ov_predict(ir[1], threads=0)
    lonely = tmp_path / "lonely.xml"
    lonely.write_text(ir[1].read_text())
    with pytest.raises(BadInputError, match="keep model.xml and model.bin together"):
        ovr.ov_predict(lonely)
    with pytest.raises(BadInputError, match="takes 1 inputs"):
        ovr.ov_predict(ir[1])((torch.zeros(2, 1, 8, 8), torch.zeros(2, 1, 8, 8)))


def test_missing_openvino_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(ovr, "openvino_available", lambda: False)
    with pytest.raises(BadInputError, match=r"needs OpenVINO, which is not installed\. Fix: pip install"):
        ovr.require_openvino("to_ir")
    with pytest.raises(BadInputError, match="not installed"):
        ovr.to_ir("model.onnx", "model.xml")


@needs_ov
def test_precision_recorded_in_the_ir(ir, tmp_path):
    # no precision recorded: f32, whatever OpenVINO's own default on this CPU is (bf16 on AVX512-BF16)
    assert ovr.stored_precision(ovr._core().read_model(str(ir[1]))) is None
    assert ovr.executed_format(ovr.compile_openvino(ir[1])).precision == "f32"
    if not ovr.sixteen_bit_precisions():
        pytest.skip("this CPU executes no 16-bit precision")
    hint = ovr.sixteen_bit_precisions()[0]
    xml = ovr.to_ir(ir[0], tmp_path / "m16.xml", precision=hint)
    assert ovr.executed_format(ovr.compile_openvino(xml)).precision == hint
    assert ovr.executed_format(ovr.compile_openvino(xml, precision="f32")).precision == "f32"  # explicit wins
    with pytest.raises(BadInputError, match="`precision` of `to_ir`"):
        ovr.to_ir(ir[0], tmp_path / "bad.xml", precision="fp32")


@needs_ov
def test_ir_params_count_like_onnx(ir, tmp_path):
    from modelpress.measure.onnx_size import onnx_params

    n = 64 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10
    assert ovr.ir_params(ir[1]) == ovr.ir_params(ir[0]) == onnx_params(ir[0]) == (n, n)


@needs_ov
def test_measure_openvino(ir, digits_model, digits_task):
    from modelpress.measure import measure_openvino
    from modelpress.tasks.train import evaluate

    s = measure_openvino(ir[1], digits_task, macs=123, warmup=1, runs=5)
    n = 64 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10
    assert s.runtime == "openvino f32" and s.params == s.nonzero_params == n and s.macs == 123
    assert s.size_bytes == ovr.ir_bytes(ir[1]) and s.peak_mem_bytes >= 4 * n
    assert s.latency_p90_ms >= s.latency_ms > 0
    assert s.metric == pytest.approx(evaluate(digits_model, digits_task), abs=1.5 / len(digits_task.test))


@needs_ov
def test_openvino_forms(ir, digits_task, reference, tmp_path):
    forms, notes = ovr.openvino_forms(ir[0], tmp_path)  # f32 and the 16-bit precisions this CPU runs
    assert [f.precision for f in forms] == ["f32", *ovr.sixteen_bit_precisions()] and notes == []
    every, notes = ovr.openvino_forms(ir[0], tmp_path / "every", precisions=ovr.PRECISIONS)
    assert [f.precision for f in every] == [f.precision for f in forms]
    assert len(notes) == 2 - len(ovr.sixteen_bit_precisions())  # each lowered 16-bit hint is named
    for f in forms:
        assert f.executed.precision == f.precision and f.bytes == ovr.ir_bytes(f.xml)
        out = f.predict(digits_task.test.inputs)
        assert float((out.argmax(1) == reference.argmax(1)).float().mean()) >= 0.99


def test_openvino_forms_without_openvino(monkeypatch, tmp_path):
    monkeypatch.setattr(ovr, "openvino_available", lambda: False)
    forms, notes = ovr.openvino_forms(tmp_path / "model.onnx", tmp_path)
    assert forms == [] and "not installed" in notes[0]


@needs_ov
def test_profile_layers(ir, digits_task):
    """Per-layer counters: the three Linear layers are FullyConnected kernels (64·300 + 300·100 + 100·10
    MACs, the first two hold almost all), times are positive ms, largest first; bad runs are bad input."""
    x = tuple(t[:1] for t in digits_task.test.inputs)
    prof = ovr.profile_layers(ir[1], x, precision="f32", runs=5)
    assert prof and all(v > 0 for v in prof.values())
    assert list(prof.values()) == sorted(prof.values(), reverse=True)
    assert any(k.startswith("FullyConnected ") for k in prof)
    assert sum(prof.values()) < 50.0  # a 50k-MAC network: far below 50 ms per call even when counted
    with pytest.raises(BadInputError, match="runs"):
        ovr.profile_layers(ir[1], x, runs=0)
