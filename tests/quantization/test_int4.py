"""4-bit weights: GPTQ against round-to-nearest, the short last group, and the deployed n-bit graph
(MatMulNBits with packed uint8 zero points, GatherBlockQuantized embeddings) against the torch simulation."""

from __future__ import annotations

import onnx
import pytest
import torch
from torch import nn

from modelpress.artifact.onnx import export_onnx
from modelpress.context import StepContext
from modelpress.errors import BadInputError
from modelpress.measure.runtime import ort_predict
from modelpress.quantization import QuantEmbedding, Quantize, QuantLinear, apply_quantize
from modelpress.quantization.affine import dequantize_weight, quantize_weight, weight_qparams
from modelpress.quantization.gptq import gptq_codes, input_hessians
from modelpress.quantization.onnx_gather import to_gather_block_quantized
from modelpress.quantization.onnx_rewrite import match_layers, to_matmul_nbits
from modelpress.tasks.train import torch_predict


def _planted_layer(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A (32, 96) weight and 2048 inputs with strongly correlated features (rank-8 signal + small noise,
    a few features 10x louder): the case where RTN's per-weight rounding is far from output-optimal."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(32, 96, generator=g) * 0.1
    x = torch.randn(2048, 8, generator=g) @ torch.randn(8, 96, generator=g) + 0.1 * torch.randn(2048, 96, generator=g)
    x[:, :4] *= 10
    return w, x


def _output_error(w_hat: torch.Tensor, w: torch.Tensor, x: torch.Tensor) -> float:
    return float(((w_hat - w) @ x.T).norm() / (w @ x.T).norm())


def test_gptq_beats_round_to_nearest_on_a_planted_layer():
    w, x = _planted_layer()
    h = x.double().T @ x.double() / len(x)
    s, z = weight_qparams(w, 4, "group", 32, symmetric=False, scale_dtype=torch.float16)
    rtn = dequantize_weight(quantize_weight(w, s, z, 4, "group", 32), s, z, "group", 32)
    q, sg, zg = gptq_codes(w, h, 4, 32, symmetric=False, scale_dtype=torch.float16)
    assert q.dtype == torch.int8 and q.shape == w.shape and int(q.min()) >= -8 and int(q.max()) <= 7
    assert sg.shape == s.shape == (32, 3, 1) and zg.shape == z.shape
    assert torch.equal(sg.half().float(), sg)  # scales representable in fp16, as the artifact stores them
    gptq = dequantize_weight(q, sg, zg, "group", 32)
    e_rtn, e_gptq = _output_error(rtn, w, x), _output_error(gptq, w, x)
    assert e_gptq <= 0.7 * e_rtn, (e_gptq, e_rtn)  # measured: about half of RTN's output error


def test_gptq_with_an_isotropic_hessian_is_round_to_nearest():
    # H = I: no column predicts another, there is no error to compensate, so GPTQ's codes are RTN's exactly
    w, _ = _planted_layer(1)
    q, s, z = gptq_codes(w, torch.eye(96, dtype=torch.float64), 4, 32, symmetric=False)
    s_rtn, z_rtn = weight_qparams(w, 4, "group", 32, symmetric=False)
    assert torch.equal(s, s_rtn) and torch.equal(z, z_rtn)
    assert torch.equal(q, quantize_weight(w, s_rtn, z_rtn, 4, "group", 32))


def test_input_hessians_are_the_mean_outer_product_of_the_inputs():
    from modelpress.tasks.task import Split

    model = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3))
    x = torch.randn(40, 6, generator=torch.Generator().manual_seed(0))
    split = Split((x,), torch.zeros(40, dtype=torch.long), "calib")
    h, rows = input_hessians(model, ["0", "2"], split, batch_size=16)
    assert rows == {"0": 40, "2": 40}
    torch.testing.assert_close(h["0"], x.double().T @ x.double() / 40)
    with torch.no_grad():
        a = torch.relu(model[0](x)).double()
    torch.testing.assert_close(h["2"], a.T @ a / 40)


def _bert_task():
    """A Task over random token sequences for the tiny BERT (only its calibration / test inputs are used)."""
    from modelpress.tasks import metrics
    from modelpress.tasks.task import Metric, Split, Task

    g = torch.Generator().manual_seed(5)

    def split(n: int, name: str) -> Split:
        ids = torch.randint(0, 2000, (n, 24), generator=g)
        return Split((ids, torch.ones(n, 24, dtype=torch.long)), torch.zeros(n, dtype=torch.long), name)

    return Task("tiny-bert", "random tokens", split(64, "train"), split(96, "calibration"), split(64, "test"),
                Metric("accuracy", metrics.accuracy), metrics.cross_entropy, lambda name=None: _tiny_bert(), "tiny")


def test_gptq_step_lowers_the_model_output_error_of_a_transformer():
    task = _bert_task()
    x = task.test.inputs
    ref = torch_predict(_tiny_bert())(x)
    err = {}
    for method in ("rtn", "gptq"):
        m = _tiny_bert()
        log = apply_quantize(m, Quantize(mode="int4-weight", method=method), StepContext(task=task, progress=False))
        err[method] = float((torch_predict(m)(x) - ref).norm() / ref.norm())
    # every Linear: 2 layers x 6, BERT's pooler and the head (96 x 24 = 2304 calibration rows each)
    assert log.details["gptq_layers"] == 14
    assert log.details["gptq_calibration_rows"]["head"] == 96  # pooled: one row per example
    assert all("not a group-wise Linear" in why for why in log.details["rtn_layers"].values())  # embeddings
    assert err["gptq"] <= 0.9 * err["rtn"], err


def test_gptq_needs_data_and_a_weight_only_mode(trained):
    with pytest.raises(BadInputError, match="task"):
        apply_quantize(trained, Quantize(mode="int4-weight", method="gptq"), StepContext())
    with pytest.raises(BadInputError, match="method"):
        Quantize(mode="int8-dynamic", method="gptq")
    with pytest.raises(BadInputError, match="method"):
        Quantize(mode="int4-weight", method="awq")


def test_four_bit_is_asymmetric_unless_asked_and_eight_bit_symmetric():
    assert Quantize(mode="int4-weight").weight_symmetric is False
    assert Quantize(mode="int8-dynamic").weight_symmetric is True
    assert Quantize(mode="int4-weight", symmetric=True).weight_symmetric is True


class _Wide(nn.Module):
    """576-wide inputs (a SmolLM-sized hidden width): 128 does not divide 576 = 4 × 128 + 64."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.fc = nn.Linear(576, 24)
        with torch.no_grad():
            self.fc.weight.copy_(torch.randn(24, 576, generator=g) * 0.05)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


def test_group_128_on_a_576_wide_layer_keeps_groups_and_deploys_exactly(tmp_path):
    m = _Wide().eval()
    log = apply_quantize(m, Quantize(mode="int4-weight", group_size=128), StepContext())
    assert log.details["granularity_fallback"] == []
    assert isinstance(m.fc, QuantLinear) and m.fc.spec.granularity == "group"
    assert m.fc.scale.shape == (24, 5, 1)  # 4 groups of 128, one of 64
    x = torch.randn(3, 7, 576, generator=torch.Generator().manual_seed(1))
    path = export_onnx(m, (x,), tmp_path / "wide.onnx")
    src = onnx.load(str(path))
    new, left = to_matmul_nbits(src, match_layers(src, m))
    assert left == [] and [n.op_type for n in new.graph.node].count("MatMulNBits") == 1
    onnx.save(new, str(tmp_path / "nbits.onnx"))
    torch.testing.assert_close(ort_predict(tmp_path / "nbits.onnx")((x,)), m(x).detach(), atol=1e-4, rtol=1e-4)


def _tiny_bert():
    from transformers import BertConfig, BertModel

    from modelpress.tasks.minilm import MiniLMClassifier

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=2000, hidden_size=96, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=192, max_position_embeddings=64)
    return MiniLMClassifier(BertModel(cfg), 5).eval()


@pytest.mark.parametrize("group", [32, 64])  # 64 does not divide the width 96: a short last block
def test_deployed_int4_bert_gathers_quantized_rows_and_matches_the_simulation(group, tmp_path):
    m = _tiny_bert()
    apply_quantize(m, Quantize(mode="int4-weight", group_size=group), StepContext())
    assert isinstance(m.encoder.embeddings.word_embeddings, QuantEmbedding)
    ids = torch.randint(0, 2000, (3, 24), generator=torch.Generator().manual_seed(2))
    mask = torch.ones(3, 24, dtype=torch.long)
    mask[:, 20:] = 0
    path = export_onnx(m, (ids, mask), tmp_path / "fp.onnx")
    src = onnx.load(str(path))
    matched = match_layers(src, m)
    new, left = to_matmul_nbits(src, matched)
    new, emb_left = to_gather_block_quantized(new, matched)
    assert left == [] and emb_left == []
    ops = [n.op_type for n in new.graph.node]
    assert ops.count("GatherBlockQuantized") == 3 and ops.count("MatMulNBits") == 13  # 6 per layer, and the head
    zps = [t for t in new.graph.initializer if t.name.endswith("_nbits_zp") or t.name.endswith("_gbq_zp")]
    assert zps and all(t.data_type == onnx.TensorProto.UINT8 for t in zps)  # packed uint8, not float
    big_float = [t.name for t in new.graph.initializer if t.data_type == onnx.TensorProto.FLOAT
                 and list(t.dims) == [2000, 96]]
    assert big_float == []  # the word table is gone from fp32
    out = tmp_path / "int4.onnx"
    onnx.save(new, str(out))
    with torch.no_grad():
        torch.testing.assert_close(ort_predict(out)((ids, mask)), m(ids, mask), atol=1e-4, rtol=1e-4)
    assert out.stat().st_size <= 0.25 * path.stat().st_size


def test_int8_rows_gather_exactly(tmp_path):
    class Bag(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(300, 40)  # 40: one per-row scale repeated over blocks of 32 (short last)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.emb(ids).sum(1)

    m = Bag().eval()
    apply_quantize(m, Quantize(mode="int8-weight"), StepContext())
    ids = torch.randint(0, 300, (4, 9), generator=torch.Generator().manual_seed(3))
    src = onnx.load(str(export_onnx(m, (ids,), tmp_path / "bag.onnx")))
    new, left = to_gather_block_quantized(src, match_layers(src, m))
    assert left == [] and [n.op_type for n in new.graph.node].count("GatherBlockQuantized") == 1
    onnx.save(new, str(tmp_path / "bag8.onnx"))
    with torch.no_grad():
        torch.testing.assert_close(ort_predict(tmp_path / "bag8.onnx")((ids,)), m(ids), atol=1e-5, rtol=1e-5)
