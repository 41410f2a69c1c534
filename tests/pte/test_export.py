"""ExecuTorch programs of every built-in model family: they load in the runtime and agree with torch
(fp32 within 1e-4), int8 agrees with modelpress's simulation, modelpress's decisions carry over, and an
op XNNPACK cannot take still exports and is reported."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

pytest.importorskip("executorch", reason="executorch is not installed (pip install 'modelpress[executorch]')")

from modelpress.context import StepContext
from modelpress.measure.executorch_runtime import pte_ops, pte_predict
from modelpress.quantization import Quantize, apply_quantize
from modelpress.quantization.executorch_export import export_pte
from modelpress.select import by_name
from modelpress.tasks.models import build


def _tiny_bert() -> nn.Module:
    """A 2-layer BERT (hidden 32, vocab 120) with mean pooling and a head, random weights, built offline."""
    from transformers import BertConfig, BertModel

    from modelpress.tasks.minilm import MiniLMClassifier

    torch.manual_seed(0)
    config = BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=32)
    return MiniLMClassifier(BertModel(config), 4).eval()


def _bert_inputs(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 120, (n, 16), generator=g)
    mask = torch.ones(n, 16, dtype=torch.int64)
    mask[:, 12:] = 0  # padded tails exercise the attention-mask code
    return ids, mask


def _image(n: int, shape=(1, 28, 28)) -> tuple[torch.Tensor]:
    return (torch.randn(n, *shape, generator=torch.Generator().manual_seed(2)),)


CASES = {
    "mlp": (lambda: build("lenet-300-100").eval(), lambda n: _image(n)),
    "cnn": (lambda: build("lenet-5").eval(), lambda n: _image(n)),
    "resnet": (lambda: build("resnet-s").eval(), lambda n: _image(n)),
    "bert": (_tiny_bert, _bert_inputs),
}


@pytest.fixture(scope="module")
def fp32_programs(tmp_path_factory):
    """family -> (model, its fp32 program); each exported once for the tests of this file."""
    done = {}

    def get(family):
        if family not in done:
            torch.manual_seed(0)
            make, inputs = CASES[family]
            model = make()
            done[family] = model, export_pte(model, inputs(1), tmp_path_factory.mktemp(family) / "m.pte")
        return done[family]

    return get


@pytest.mark.parametrize("family", sorted(CASES))
def test_fp32_program_agrees_with_torch(family, fp32_programs):
    model, pte = fp32_programs(family)
    inputs = CASES[family][1]
    x = inputs(5)
    out, ref = pte_predict(pte.path)(x), model(*x).detach()
    assert out.shape == ref.shape
    assert float((out - ref).abs().max()) <= 1e-4  # fp32 kernels: rounding only
    assert pte.ops.delegate_calls >= 1 and pte.ops.delegated.get("aten::linear", 0) >= 1
    assert pte.bytes == pte.path.stat().st_size


def test_int8_static_carries_modelpress_codes_and_float_layers(digits_task, digits_model, tmp_path):
    """fc3 kept float by the selection stays float; fc1 / fc2 get modelpress's weight scales (and fc2
    its calibrated input range); the program agrees with the PyTorch simulation on the test split."""
    q = copy.deepcopy(digits_model)
    apply_quantize(q, Quantize(mode="int8-static"), StepContext(task=digits_task, select=by_name("fc[12]"),
                                                                 progress=False))
    pte = export_pte(q, digits_task.example_inputs, tmp_path / "q.pte", mode="int8-static",
                     calibration=digits_task.calibration)
    # fc2's input range is modelpress's; fc1's input is the flattened image, a view whose grid XNNPACK
    # keeps from its producer (see `_SHARED`), so XNNPACK's observer calibrates it
    assert pte.carried["weight_scales"] == 2 and pte.carried["activation_ranges"] == 1
    assert pte.carried["activation_ranges_not_carried"] == 1
    assert pte.carried["layers_kept_float"] == ["fc3"]
    assert pte.ops.delegated["quantized_decomposed::dequantize_per_channel"] == 2  # two int8 weights
    x = digits_task.test.inputs
    out, sim = pte_predict(pte.path)(x), q(*x).detach()
    agree = float((out.argmax(1) == sim.argmax(1)).float().mean())
    cosine = float(torch.nn.functional.cosine_similarity(out, sim).mean())
    # XNNPACK also requantizes fc1/fc2 outputs (the simulation does not): stated tolerance 1% / 0.999
    assert agree >= 0.99 and cosine >= 0.999, (agree, cosine)


def test_int8_dynamic_bert_quantizes_the_embeddings(fp32_programs, tmp_path):
    model, fp = fp32_programs("bert")
    q = copy.deepcopy(model)
    apply_quantize(q, Quantize(mode="int8-dynamic"), StepContext(progress=False))
    pte = export_pte(q, _bert_inputs(1), tmp_path / "q.pte", mode="int8-dynamic")
    assert pte.carried["noop_int_adds_dropped"] >= 1  # the attention mask's int64 add(x, 0)
    assert pte.ops.portable.get("quantized_decomposed::embedding_byte", 0) == 3  # word, position, type
    # every Linear / Embedding weight stored in 1 byte instead of 4: at least 75% of those 3 bytes per
    # weight saved (82% measured; the scales and the int8 graph's quantize / dequantize nodes take the rest)
    weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, (nn.Linear, nn.Embedding)))
    assert fp.bytes - pte.bytes >= 0.75 * 3 * weights, (pte.bytes, fp.bytes, weights)
    x = _bert_inputs(8)
    out, sim = pte_predict(pte.path)(x), q(*x).detach()
    assert float(torch.nn.functional.cosine_similarity(out, sim).mean()) >= 0.99


class _Cumsum(nn.Module):
    """A Linear then ``cumsum``, an op XNNPACK has no kernel for."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cumsum(self.fc(x.flatten(1)), dim=1)


def test_an_op_xnnpack_cannot_take_falls_back_and_is_reported(digits_task, tmp_path):
    from modelpress.context import DeployTarget
    from modelpress.pipeline.deploy import export_deployed

    torch.manual_seed(0)
    model = _Cumsum().eval()
    info = export_deployed(model, [], digits_task, tmp_path / "model.onnx", reference=model,
                           target=DeployTarget(runtime="executorch"))
    shipped = info["shipped"]
    assert shipped["runtime"] == "executorch" and shipped["file"] == "model.pte"
    assert shipped["ops"]["portable"] == {"aten::cumsum": 1}
    assert shipped["ops"]["delegated"]["aten::linear"] == 1
    assert pte_ops(tmp_path / "model.pte").portable == {"aten::cumsum": 1}  # read back off the file
    out = pte_predict(tmp_path / "model.pte")(digits_task.test.inputs)
    assert float((out - model(*digits_task.test.inputs).detach()).abs().max()) <= 1e-4


def test_int8_static_cnn_loads_and_agrees_with_the_simulation(tmp_path):
    """LeNet-5 (convs, max pools) in int8: XNNPACK refuses a max pool whose output grid differs from its
    input's, so the conv after a pool keeps the pool's grid; the program loads and follows the simulation."""
    from modelpress import tasks

    task = tasks.get("mnist-5k")
    torch.manual_seed(0)
    q = build("lenet-5").eval()
    apply_quantize(q, Quantize(mode="int8-static", calibration_size=64), StepContext(task=task, progress=False))
    pte = export_pte(q, task.example_inputs, tmp_path / "q.pte", mode="int8-static",
                     calibration=task.calibration.head(64))
    assert pte.ops.delegated["aten::max_pool2d"] == 2 and not pte.ops.portable
    assert pte.carried["weight_scales"] == 4 and pte.carried["activation_ranges_not_carried"] >= 1
    x = tuple(t[:200] for t in task.test.inputs)
    out, sim = pte_predict(pte.path)(x), q(*x).detach()
    # random weights: small logit margins, so the stated tolerance is on the outputs (cosine 0.99)
    assert float(torch.nn.functional.cosine_similarity(out, sim).mean()) >= 0.99
