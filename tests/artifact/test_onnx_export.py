"""export_onnx: the file runs in onnxruntime and matches torch; failures become CompressionError."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from modelpress.artifact.onnx import OPSET, export_onnx
from modelpress.errors import BadInputError, CompressionError
from modelpress.tasks.models import build


def _run(path, *inputs: Tensor) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return sess.run(["logits"], {f"input_{i}": x.numpy() for i, x in enumerate(inputs)})[0]


@pytest.mark.parametrize("name", ["lenet-5", "resnet-s"])
def test_export_matches_torch_with_dynamic_batch(tmp_path, name):
    torch.manual_seed(0)
    model = build(name)
    model.train()  # export must switch to eval (BN running stats), without changing the caller's model
    path = export_onnx(model, (torch.randn(2, 1, 28, 28),), tmp_path / "m.onnx")
    assert model.training
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]  # weights inside the one file
    graph = onnx.load(str(path))
    assert [i.name for i in graph.graph.input] == ["input_0"]
    assert [o.name for o in graph.graph.output] == ["logits"]
    assert any(op.version >= OPSET for op in graph.opset_import if op.domain in ("", "ai.onnx"))
    x = torch.randn(5, 1, 28, 28)  # another batch size than the example
    with torch.no_grad():
        ref = model.eval()(x).numpy()
    out = _run(path, x)
    assert out.shape == (5, 10)
    np.testing.assert_allclose(out, ref, atol=1e-4, rtol=0)


def test_export_bakes_parametrizations(tmp_path):
    torch.manual_seed(0)
    model = build("lenet-300-100").eval()

    class Half(nn.Module):
        def forward(self, w: Tensor) -> Tensor:
            return w * (torch.arange(w.shape[1]) % 2 == 0)

    parametrize.register_parametrization(model.fc1, "weight", Half())
    path = export_onnx(model, torch.randn(1, 1, 28, 28), tmp_path / "m.onnx")
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        ref = model(x).numpy()
    np.testing.assert_allclose(_run(path, x), ref, atol=1e-4, rtol=0)
    assert parametrize.is_parametrized(model.fc1)


def test_packed_modules_export_in_dense_form(tmp_path):
    q = pytest.importorskip("modelpress.quantization.modules")
    torch.manual_seed(0)
    model = build("lenet-300-100").eval()
    model.fc1 = q.QuantLinear.from_float(model.fc1, q.WeightSpec(bits=8))
    path = export_onnx(model, torch.randn(1, 1, 28, 28), tmp_path / "m.onnx")
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        ref = model(x).numpy()
    np.testing.assert_allclose(_run(path, x), ref, atol=1e-4, rtol=0)


def test_two_inputs_are_named_in_order(tmp_path):
    class Two(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, a: Tensor, b: Tensor) -> Tensor:
            return self.fc(a) * b

    model = Two().eval()
    a, b = torch.randn(2, 4), torch.randn(2, 3)
    path = export_onnx(model, (a, b), tmp_path / "two.onnx")
    with torch.no_grad():
        np.testing.assert_allclose(_run(path, a, b), model(a, b).numpy(), atol=1e-6, rtol=0)


def test_unexportable_model_raises_compression_error(tmp_path):
    class NotExportable(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            return torch.from_numpy(np.sort(x.detach().numpy(), axis=1).copy()) + x.sum().item()

    with pytest.raises(CompressionError, match="ONNX export of NotExportable failed"):
        export_onnx(NotExportable(), torch.randn(2, 3), tmp_path / "bad.onnx")


def test_bad_example_inputs(tmp_path):
    with pytest.raises(BadInputError, match="example_inputs"):
        export_onnx(nn.Linear(2, 2), [1.0, 2.0], tmp_path / "x.onnx")  # type: ignore[arg-type]


def test_hf_encoder_with_mask_exports(tmp_path):
    from modelpress.tasks.minilm import from_hf_source

    config = {"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
              "intermediate_size": 64, "vocab_size": 100, "max_position_embeddings": 64}
    torch.manual_seed(0)
    model = from_hf_source({"kind": "hf", "config": config, "wrapper": "encoder-mean-pool", "num_classes": 3})
    ids, mask = torch.randint(0, 100, (2, 16)), torch.ones(2, 16, dtype=torch.long)
    path = export_onnx(model, (ids, mask), tmp_path / "bert.onnx")
    ids, mask = torch.randint(0, 100, (4, 16)), torch.ones(4, 16, dtype=torch.long)
    mask[2, 9:] = 0  # padding must be honoured by the exported graph
    with torch.no_grad():
        ref = model.eval()(ids, mask).numpy()
    np.testing.assert_allclose(_run(path, ids, mask), ref, atol=1e-4, rtol=0)


def test_fixed_batch_export(tmp_path):
    model = build("lenet-300-100").eval()
    path = export_onnx(model, torch.randn(2, 1, 28, 28), tmp_path / "m.onnx", dynamic_batch=False)
    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [2, 1, 28, 28]
