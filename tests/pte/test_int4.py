"""4-bit programs (``int4-dynamic``): modelpress's 4-bit Linear codes run in XNNPACK's int4 group-wise
kernels, its 4-bit tables in ``embedding_4bit``, and the program agrees with the PyTorch simulation."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

pytest.importorskip("executorch", reason="executorch is not installed (pip install 'modelpress[executorch]')")

from modelpress.context import StepContext
from modelpress.errors import BadInputError
from modelpress.measure.executorch_runtime import pte_predict
from modelpress.quantization import Quantize, apply_quantize
from modelpress.quantization.executorch_export import export_pte
from tests.pte.test_export import _bert_inputs, _tiny_bert


def _int4(model: nn.Module, **kw) -> nn.Module:
    q = copy.deepcopy(model)
    apply_quantize(q, Quantize(mode="int4-weight", **kw), StepContext(progress=False))
    return q


@pytest.fixture(scope="module")
def bert():
    return _tiny_bert()


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a, b).mean())


def test_symmetric_int4_codes_run_in_xnnpack_and_follow_the_simulation(bert, tmp_path):
    q = _int4(bert, symmetric=True)
    pte = export_pte(q, _bert_inputs(1), tmp_path / "q4.pte", mode="int4-dynamic")
    linears = sum(isinstance(m, nn.Linear) for m in bert.modules())
    assert pte.carried["int4"] == {"carried": linears, "embedding": 3}
    assert pte.ops.portable.get("quantized_decomposed::embedding_4bit", 0) == 3  # word, position, type
    # every Linear the graph runs (the unused BERT pooler is dropped by export) takes int8 inputs in XNNPACK
    assert pte.ops.delegated["aten::linear"] == pte.ops.delegated["torchao::choose_qparams_affine"] == linears - 1
    assert "aten::linear" not in pte.ops.portable
    assert any("bfloat16" in n for n in pte.notes)
    # 4-bit codes: every Linear / Embedding weight in half a byte (of 4), scales and graph on top; the
    # fp32 program of this model is 73 kB, measured 34.6 kB here: at least 3 / 8 of the weight bytes saved
    fp = export_pte(bert, _bert_inputs(1), tmp_path / "fp.pte")
    weights = sum(m.weight.numel() for m in bert.modules() if isinstance(m, (nn.Linear, nn.Embedding)))
    assert fp.bytes - pte.bytes >= 0.6 * 3.5 * weights, (pte.bytes, fp.bytes, weights)
    x = _bert_inputs(16)
    out, sim, ref = pte_predict(pte.path)(x), q(*x).detach(), bert(*x).detach()
    # stated tolerance: the program adds int8 per-token input quantization and bfloat16 group scales to
    # the weight-only simulation; measured cosine 0.9999 to it, far above the 4-bit error to fp32
    assert _cosine(out, sim) >= 0.999, _cosine(out, sim)
    assert _cosine(out, sim) > _cosine(sim, ref)


def test_asymmetric_int4_codes_are_requantized_and_said_so(bert, tmp_path):
    q = _int4(bert)  # the 4-bit default: asymmetric, which XNNPACK's 4-bit kernels cannot take
    pte = export_pte(q, _bert_inputs(1), tmp_path / "q4.pte", mode="int4-dynamic")
    linears = sum(isinstance(m, nn.Linear) for m in bert.modules())
    assert pte.carried["int4"] == {"requantized": linears, "embedding": 3}
    assert sum("re-quantized symmetric" in n for n in pte.notes) == linears
    x = _bert_inputs(16)
    out, sim = pte_predict(pte.path)(x), q(*x).detach()
    # a second 4-bit rounding on top of the simulation's: stated tolerance cosine 0.99
    assert _cosine(out, sim) >= 0.99, _cosine(out, sim)


def test_a_layer_whose_group_does_not_divide_its_rows_takes_the_8bit_path(digits_task, digits_model, tmp_path):
    """LeNet-300-100 on digits: fc1 has 64 inputs (two groups of 32), fc2 / fc3 300 and 100 (no)."""
    q = _int4(digits_model, symmetric=True)
    pte = export_pte(q, digits_task.example_inputs, tmp_path / "q4.pte", mode="int4-dynamic")
    assert pte.carried["int4"] == {"carried": 1}
    assert sum("does not divide" in n for n in pte.notes) == 2
    assert pte.ops.delegated["aten::linear"] == 3 and not pte.ops.portable
    x = digits_task.test.inputs
    out, sim = pte_predict(pte.path)(x), q(*x).detach()
    assert float((out.argmax(1) == sim.argmax(1)).float().mean()) >= 0.98


def test_int4_mode_needs_4bit_layers(bert, tmp_path):
    with pytest.raises(BadInputError, match="int4-dynamic"):
        export_pte(bert, _bert_inputs(1), tmp_path / "x.pte", mode="int4-dynamic")
