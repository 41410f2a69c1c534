"""Rebuilding structure: changed shapes, module swaps, callable and Hugging Face sources, tied weights."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from modelpress.artifact import folder_bytes, load, rebuild, save
from modelpress.artifact.packed import PackedModule
from modelpress.errors import BadInputError
from modelpress.source import attach_source
from modelpress.tasks.models import build


def test_structured_pruning_shapes_roundtrip(tmp_path, assert_same, manifest_of):
    torch.manual_seed(0)
    model = build("lenet-300-100")
    keep = torch.arange(0, 300, 2)  # fc1 loses half its output neurons, fc2 the matching inputs
    fc1, fc2 = nn.Linear(784, 150), nn.Linear(150, 100)
    with torch.no_grad():
        fc1.weight.copy_(model.fc1.weight[keep])
        fc1.bias.copy_(model.fc1.bias[keep])
        fc2.weight.copy_(model.fc2.weight[:, keep])
        fc2.bias.copy_(model.fc2.bias)
    model.fc1, model.fc2 = fc1, fc2
    folder = save(model, tmp_path / "a")
    shapes = manifest_of(folder)["shapes"]
    assert shapes["fc1"]["attrs"] == {"out_features": 150}
    assert shapes["fc2"]["attrs"] == {"in_features": 150}
    assert shapes["fc1"]["tensors"]["weight"]["shape"] == [150, 784]
    loaded = load(folder)
    assert loaded.fc1.out_features == 150 and loaded.fc2.in_features == 150
    assert "in_features=150" in repr(loaded.fc2)
    assert_same(model, loaded)
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), loaded(x))

# ---- module swaps ---------------------------------------------------------------------------------------


class TinyPacked(PackedModule):
    """A test-only packed Linear: int8 codes times one scale."""

    def __init__(self, q: Tensor, scale: Tensor) -> None:
        super().__init__()
        self.register_buffer("q", q)
        self.register_buffer("scale", scale)

    def forward(self, x: Tensor) -> Tensor:
        return x @ (self.q.float() * self.scale).T

    def pack(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        return {"q": self.q, "scale": self.scale}, {"out": self.q.shape[0]}

    @classmethod
    def unpack(cls, tensors: dict[str, Tensor], meta: dict[str, Any]) -> TinyPacked:
        assert tensors["q"].shape[0] == meta["out"]
        return cls(tensors["q"], tensors["scale"])


def _with_tiny(model: nn.Module) -> nn.Module:
    torch.manual_seed(1)
    model.fc3 = TinyPacked(torch.randint(-127, 128, (10, 100), dtype=torch.int8), torch.tensor(0.01))
    return model


def test_swap_class_outside_modelpress_is_refused(tmp_path, manifest_of):
    folder = save(_with_tiny(build("lenet-300-100")), tmp_path / "a")
    swap = manifest_of(folder)["swaps"][0]
    assert swap["path"] == "fc3" and swap["class"].endswith(":TinyPacked") and swap["meta"] == {"out": 10}
    with pytest.raises(BadInputError, match="outside the modelpress package"):
        load(folder)


def test_swap_roundtrip_when_allowed(tmp_path, monkeypatch, assert_same):
    model = _with_tiny(build("lenet-300-100"))
    monkeypatch.setattr(rebuild, "ALLOWED_PACKED_PREFIXES", ("modelpress.", TinyPacked.__module__))
    loaded = load(save(model, tmp_path / "a"))
    assert isinstance(loaded.fc3, TinyPacked)
    assert_same(model, loaded)


@pytest.mark.parametrize("ref", ["modelpress.errors:BadInputError", "modelpress.artifact.packed:PackedModule",
                                 "os:system", "modelpress.nothing:X"])
def test_swap_class_must_be_a_modelpress_packed_module(tmp_path, ref, manifest_of):
    folder = save(_with_tiny(build("lenet-300-100")), tmp_path / "a")
    man = manifest_of(folder)
    man["swaps"][0]["class"] = ref
    (folder / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(BadInputError):
        load(folder)


def test_quantized_modules_roundtrip(tmp_path, assert_same, manifest_of):
    q = pytest.importorskip("modelpress.quantization.modules")
    torch.manual_seed(0)
    model = build("lenet-5")
    model.fc1 = q.QuantLinear.from_float(model.fc1, q.WeightSpec(bits=4, granularity="group"))
    model.conv2 = q.QuantConv2d.from_float(model.conv2, q.WeightSpec(bits=8, symmetric=False))
    model.fc2 = q.HalfLinear.from_float(model.fc2)
    folder = save(model, tmp_path / "a")
    classes = {s["path"]: s["class"] for s in manifest_of(folder)["swaps"]}
    assert classes == {"conv2": "modelpress.quantization.modules:QuantConv2d",
                       "fc1": "modelpress.quantization.modules:QuantLinear",
                       "fc2": "modelpress.quantization.modules:HalfLinear"}
    loaded = load(folder)
    assert_same(model, loaded)
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), loaded(x))
    # int4 codes take half a byte: the artifact is well under a quarter of fp32
    assert folder_bytes(folder) < 0.3 * folder_bytes(save(build("lenet-5"), tmp_path / "dense"))


def test_unknown_replacement_module_fails_at_save(tmp_path):
    model = build("lenet-300-100")
    model.fc2 = nn.Sequential(nn.Linear(300, 20), nn.Linear(20, 100))  # not a PackedModule
    with pytest.raises(BadInputError, match="PackedModule"):
        save(model, tmp_path / "a")
    assert not (tmp_path / "a").exists()

# ---- callable sources and tied weights -------------------------------------------------------------------


class Tied(nn.Module):
    def __init__(self, vocab: int = 50, dim: int = 8) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.out = nn.Linear(dim, vocab, bias=False)
        self.out.weight = self.emb.weight

    def forward(self, ids: Tensor) -> Tensor:
        return self.out(self.emb(ids).mean(1))


def make_tied(vocab: int = 50) -> nn.Module:
    """A factory for a `module:function` source (this test module is importable under pytest)."""
    return attach_source(Tied(vocab), {"kind": "callable", "ref": f"{__name__}:make_tied",
                                       "kwargs": {"vocab": vocab}})


def test_callable_source_with_tied_weights(tmp_path, assert_same, manifest_of):
    model = make_tied(40)
    folder = save(model, tmp_path / "a")
    assert manifest_of(folder)["aliases"] == {"out.weight": "emb.weight"}
    with pytest.raises(BadInputError, match=r"function 'test_rebuild:make_tied'.*trust_source=True.*--trust-source"):
        load(folder)  # a user's function runs only when the caller trusts the artifact
    loaded = load(folder, trust_source=True)
    assert loaded.out.weight.shape == (40, 8)
    assert loaded.out.weight is loaded.emb.weight  # still one tensor
    assert_same(model, loaded)


def test_callable_source_into_stdlib_is_refused(tmp_path, manifest_of):
    folder = save(build("lenet-300-100"), tmp_path / "a")
    marker = tmp_path / "pwned"
    man = manifest_of(folder)
    man["source"] = {"kind": "callable", "ref": "os:system", "kwargs": {"command": f"touch {marker}"}}
    (folder / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(BadInputError, match="trust_source"):
        load(folder)
    with pytest.raises(BadInputError, match="refusing"):
        load(folder, trust_source=True)  # even trusted, the stdlib holds no model factory
    assert not marker.exists()

# ---- Hugging Face structure: pruned attention heads ------------------------------------------------------


def _tiny_bert_source() -> dict[str, Any]:
    config = {"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
              "intermediate_size": 64, "vocab_size": 100, "max_position_embeddings": 64}
    return {"kind": "hf", "config": config, "wrapper": "encoder-mean-pool", "num_classes": 3}


def _shrink_linear(lin: nn.Linear, keep_out: Tensor | None = None, keep_in: Tensor | None = None) -> nn.Linear:
    w = lin.weight.detach()
    w = w[keep_out] if keep_out is not None else w
    w = w[:, keep_in] if keep_in is not None else w
    new = nn.Linear(w.shape[1], w.shape[0])
    with torch.no_grad():
        new.weight.copy_(w)
        new.bias.copy_(lin.bias if keep_out is None else lin.bias[keep_out])
    return new


def test_hf_model_with_pruned_heads_and_ffn_roundtrips(tmp_path, assert_same, manifest_of):
    from modelpress.tasks.minilm import from_hf_source

    torch.manual_seed(0)
    model = from_hf_source(_tiny_bert_source()).eval()
    layer = model.encoder.encoder.layer[0]
    attn = layer.attention.self
    keep = torch.arange(16, 32)  # drop heads 0 and 1 (head size 8)
    for name in ("query", "key", "value"):
        setattr(attn, name, _shrink_linear(getattr(attn, name), keep_out=keep))
    attn.num_attention_heads, attn.all_head_size = 2, 16
    layer.attention.output.dense = _shrink_linear(layer.attention.output.dense, keep_in=keep)
    ffn = torch.arange(0, 64, 4)  # keep a quarter of the FFN neurons
    layer.intermediate.dense = _shrink_linear(layer.intermediate.dense, keep_out=ffn)
    layer.output.dense = _shrink_linear(layer.output.dense, keep_in=ffn)
    ids = torch.randint(0, 100, (3, 12))
    mask = torch.ones(3, 12, dtype=torch.long)
    mask[1, 7:] = 0
    with torch.no_grad():
        ref = model(ids, mask)

    folder = save(model, tmp_path / "a")
    shapes = manifest_of(folder)["shapes"]
    assert shapes["encoder.encoder.layer.0.attention.self"]["attrs"] == {"all_head_size": 16,
                                                                        "num_attention_heads": 2}
    loaded = load(folder)
    assert loaded.encoder.encoder.layer[0].attention.self.num_attention_heads == 2
    assert loaded.encoder.encoder.layer[1].attention.self.num_attention_heads == 4
    assert_same(model, loaded)
    with torch.no_grad():
        assert torch.equal(loaded(ids, mask), ref)


class WithTable(nn.Module):
    def __init__(self, n: int = 6) -> None:
        super().__init__()
        self.fc = nn.Linear(4, n)
        self.register_buffer("table", torch.arange(n, dtype=torch.float32), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(x) * self.table


def make_with_table(n: int = 6) -> nn.Module:
    return attach_source(WithTable(n), {"kind": "callable", "ref": f"{__name__}:make_with_table",
                                        "kwargs": {"n": n}})


def test_shrunk_non_persistent_buffer_keeps_its_values(tmp_path, manifest_of):
    model = make_with_table()
    model.fc = nn.Linear(4, 3)
    model.table = torch.tensor([5.0, -1.0, 2.0])
    folder = save(model, tmp_path / "a")
    assert manifest_of(folder)["nonpersistent"] == ["table"]
    loaded = load(folder, trust_source=True)
    assert torch.equal(loaded.table, model.table)
    x = torch.randn(2, 4)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))



def test_structure_comparison_on_the_meta_device(tmp_path, monkeypatch, assert_same, manifest_of):
    import importlib

    # big models compare against a fresh build on the meta device; force that path for a small one
    monkeypatch.setattr(importlib.import_module("modelpress.artifact.saving"), "_META_ABOVE_BYTES", 0)
    torch.manual_seed(0)
    model = build("resnet-s", widths=(16, 32, 64))  # layer1 at 16 channels, as the slices below assume
    conv = model.layer1[0].conv1
    keep = torch.arange(0, 16, 2)
    new_conv = nn.Conv2d(16, 8, 3, 1, 1, bias=False)
    new_bn = nn.BatchNorm2d(8)
    second = nn.Conv2d(8, 16, 3, 1, 1, bias=False)
    with torch.no_grad():
        new_conv.weight.copy_(conv.weight[keep])
        new_bn.running_mean.copy_(torch.randn(8))
        second.weight.copy_(model.layer1[0].conv2.weight[:, keep])
    model.layer1[0].conv1, model.layer1[0].bn1, model.layer1[0].conv2 = new_conv, new_bn, second
    folder = save(model, tmp_path / "a")
    shapes = manifest_of(folder)["shapes"]
    assert shapes["layer1.0.bn1"]["attrs"] == {"num_features": 8}
    assert shapes["layer1.0.conv2"]["attrs"] == {"in_channels": 8}
    loaded = load(folder)
    assert_same(model, loaded)
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), loaded(x))
