"""Peak forward memory: a planted exact figure, and the orderings it must respect."""

from __future__ import annotations

import torch
from torch import nn

from modelpress.artifact.onnx import export_onnx
from modelpress.measure.memory import peak_forward_bytes, peak_onnx_bytes


def test_single_linear_is_weights_plus_input_plus_output():
    layer = nn.Linear(784, 300).eval()
    x = torch.randn(64, 784)
    expected = (784 * 300 + 300) * 4 + 64 * 784 * 4 + 64 * 300 * 4  # the only allocation is the output
    assert peak_forward_bytes(layer, (x,)) == expected


def test_bigger_batch_bigger_peak(lenet):
    model = lenet().eval()
    small = peak_forward_bytes(model, (torch.randn(1, 1, 28, 28),))
    big = peak_forward_bytes(model, (torch.randn(64, 1, 28, 28),))
    # At least the growth of input + first hidden activation: 63 rows × (784 + 300) floats.
    assert big - small >= 63 * (784 + 300) * 4


def test_twice_the_weights_bigger_peak():
    x = (torch.randn(8, 256),)
    one = nn.Sequential(nn.Linear(256, 256)).eval()
    two = nn.Sequential(nn.Linear(256, 256), nn.Linear(256, 256)).eval()
    a, b = peak_forward_bytes(one, x), peak_forward_bytes(two, x)
    assert b - a >= (256 * 256 + 256) * 4


def test_tied_weights_count_once():
    emb = nn.Embedding(1000, 64)
    head = nn.Linear(64, 1000, bias=False)
    head.weight = emb.weight
    model = nn.Sequential(emb, head).eval()
    x = torch.zeros(1, 4, dtype=torch.long)
    peak = peak_forward_bytes(model, (x,))
    assert 1000 * 64 * 4 < peak < 2 * 1000 * 64 * 4


def test_onnx_peak_matches_the_torch_figure_for_a_linear(tmp_path):
    layer = nn.Linear(784, 300).eval()
    path = export_onnx(layer, (torch.randn(1, 784),), tmp_path / "lin.onnx")
    x = torch.randn(64, 784)
    # Initializers + input + the output: the same quantities as torch's figure.
    assert peak_onnx_bytes(path, (x,)) == peak_forward_bytes(layer, (x,))


def test_onnx_peak_orderings(tmp_path, lenet):
    path = export_onnx(lenet(), (torch.randn(1, 1, 28, 28),), tmp_path / "lenet.onnx")
    small = peak_onnx_bytes(path, (torch.randn(1, 1, 28, 28),))
    big = peak_onnx_bytes(path, (torch.randn(64, 1, 28, 28),))
    assert small >= 266_610 * 4
    assert big - small >= 63 * (784 + 300) * 4


def test_an_input_view_counts_its_rows_not_the_whole_data_set():
    layer = nn.Linear(784, 300).eval()
    data = torch.randn(1000, 784)
    assert peak_forward_bytes(layer, (data[:1],)) == peak_forward_bytes(layer, (data[:1].clone(),))


def test_onnx_peak_of_int8_qdq_counts_the_fused_int8_graph(tmp_path, lenet):
    import numpy as np
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            rng = np.random.default_rng(0)
            self.batches = iter(
                [{"input_0": rng.standard_normal((1, 1, 28, 28), np.float32)} for _ in range(4)]
            )

        def get_next(self):
            return next(self.batches, None)

    fp32 = export_onnx(lenet(), (torch.randn(1, 1, 28, 28),), tmp_path / "fp32.onnx")
    int8 = tmp_path / "int8.onnx"
    quantize_static(str(fp32), str(int8), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)  # fmt: skip
    x = (torch.randn(1, 1, 28, 28),)
    a, b = peak_onnx_bytes(fp32, x), peak_onnx_bytes(int8, x)
    # onnxruntime fuses QDQ into int8 kernels: about a quarter of the fp32 weights, not fp32 + int8 copies
    assert b < a / 3
    assert b >= 266_610
