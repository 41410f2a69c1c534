"""save → load round trips bit-exactly; damaged, foreign or future artifacts are refused clearly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from modelpress.artifact import bake, folder_bytes, load, rebuild, save
from modelpress.artifact.packed import PackedModule
from modelpress.artifact.packing import ENTRY_OVERHEAD_BYTES, bitmask_nbytes
from modelpress.errors import BadInputError
from modelpress.source import attach_source, get_source
from modelpress.tasks.models import build


def _assert_same(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert sa[k].dtype == sb[k].dtype and sa[k].shape == sb[k].shape, k
        width = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[sa[k].element_size()]
        assert torch.equal(sa[k].contiguous().view(width), sb[k].contiguous().view(width)), k


def _manifest(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "manifest.json").read_text())


@pytest.mark.parametrize("name", ["lenet-300-100", "lenet-5", "resnet-s"])
def test_roundtrip_builtin_is_bit_exact(tmp_path, name):
    torch.manual_seed(0)
    model = build(name)
    if name == "resnet-s":  # non-trivial BN statistics, as after training
        model.train()
        with torch.no_grad():
            model(torch.randn(8, 1, 28, 28))
    steps = [{"name": "prune", "config": {"sparsity": 0.5}}]
    folder = save(model, tmp_path / "art", steps=steps)
    loaded = load(folder)
    _assert_same(model, loaded)
    assert get_source(loaded) == get_source(model)
    assert not loaded.training
    x = torch.randn(4, 1, 28, 28)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    man = _manifest(folder)
    assert man["format"] == "modelpress-artifact" and man["format_version"] == 1
    assert isinstance(man["modelpress_version"], str) and man["steps"] == steps
    assert man["shapes"] == {} and man["swaps"] == []
    assert folder_bytes(folder) == sum(f.stat().st_size for f in folder.iterdir())


def test_save_does_not_touch_the_callers_model_and_bakes_masks(tmp_path):
    class Mask(nn.Module):
        def __init__(self, m: Tensor) -> None:
            super().__init__()
            self.register_buffer("m", m)

        def forward(self, w: Tensor) -> Tensor:
            return w * self.m

    torch.manual_seed(0)
    model = build("lenet-300-100")
    mask = (torch.rand_like(model.fc1.weight) > 0.8).float()
    parametrize.register_parametrization(model.fc1, "weight", Mask(mask))
    expected = model.fc1.weight.detach().clone()
    loaded = load(save(model, tmp_path / "a"))
    assert parametrize.is_parametrized(model.fc1)  # caller's model untouched
    assert torch.equal(model.fc1.weight, expected)
    assert torch.equal(loaded.fc1.weight, expected)
    assert set(loaded.state_dict()) == set(build("lenet-300-100").state_dict())


def test_ninety_percent_zeros_is_smaller_as_predicted(tmp_path):
    torch.manual_seed(0)
    dense = build("lenet-300-100")
    sparse = build("lenet-300-100")
    sparse.load_state_dict(dense.state_dict())
    predicted = 0
    with torch.no_grad():
        for name, p in sparse.named_parameters():
            if p.dim() == 2:
                p[torch.rand_like(p) < 0.9] = 0
                predicted += bitmask_nbytes(p.numel(), int((p != 0).sum()), 4) + ENTRY_OVERHEAD_BYTES
            else:
                predicted += p.numel() * 4
    dense_bytes = folder_bytes(save(dense, tmp_path / "dense"))
    sparse_dir = save(sparse, tmp_path / "sparse")
    sparse_bytes = folder_bytes(sparse_dir)
    dense_payload = sum(p.numel() * 4 for p in dense.parameters())
    # the packing predicts ~13 % of dense (1/32 mask + 10 % values); allow 1 % + 8 KB of header/manifest
    assert predicted / dense_payload < 0.14
    assert sparse_bytes <= predicted + 0.01 * dense_payload + 8192
    assert sparse_bytes / dense_bytes < 0.15
    encodings = {k: v["encoding"] for k, v in _manifest(sparse_dir)["tensors"].items()}
    assert encodings["fc1.weight"] == encodings["fc2.weight"] == encodings["fc3.weight"] == "bitmask"
    assert encodings["fc1.bias"] == "dense"
    _assert_same(sparse, load(sparse_dir))


def test_weight_sharing_gets_zstd(tmp_path):
    torch.manual_seed(0)
    model = build("lenet-300-100")
    with torch.no_grad():
        for p in model.parameters():  # 16 shared values per tensor, like Deep Compression's clustering
            levels = torch.linspace(float(p.min()), float(p.max()), 16)
            p.copy_(levels[torch.randint(0, 16, p.shape)])
    folder = save(model, tmp_path / "a")
    files = _manifest(folder)["files"]
    assert list(files) == ["weights.safetensors.zst"] and files["weights.safetensors.zst"]["compression"] == "zstd"
    assert folder_bytes(folder) < 0.3 * sum(p.numel() * 4 for p in model.parameters())
    _assert_same(model, load(folder))


def test_structured_pruning_shapes_roundtrip(tmp_path):
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
    shapes = _manifest(folder)["shapes"]
    assert shapes["fc1"]["attrs"] == {"out_features": 150}
    assert shapes["fc2"]["attrs"] == {"in_features": 150}
    assert shapes["fc1"]["tensors"]["weight"]["shape"] == [150, 784]
    loaded = load(folder)
    assert loaded.fc1.out_features == 150 and loaded.fc2.in_features == 150
    assert "in_features=150" in repr(loaded.fc2)
    _assert_same(model, loaded)
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), loaded(x))


def test_half_precision_dtypes_survive(tmp_path):
    model = build("lenet-300-100").to(torch.bfloat16)
    loaded = load(save(model, tmp_path / "a"))
    assert loaded.fc1.weight.dtype == torch.bfloat16
    _assert_same(model, loaded)


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


def test_swap_class_outside_modelpress_is_refused(tmp_path):
    folder = save(_with_tiny(build("lenet-300-100")), tmp_path / "a")
    swap = _manifest(folder)["swaps"][0]
    assert swap["path"] == "fc3" and swap["class"].endswith(":TinyPacked") and swap["meta"] == {"out": 10}
    with pytest.raises(BadInputError, match="outside the modelpress package"):
        load(folder)


def test_swap_roundtrip_when_allowed(tmp_path, monkeypatch):
    model = _with_tiny(build("lenet-300-100"))
    monkeypatch.setattr(rebuild, "ALLOWED_PACKED_PREFIXES", ("modelpress.", TinyPacked.__module__))
    loaded = load(save(model, tmp_path / "a"))
    assert isinstance(loaded.fc3, TinyPacked)
    _assert_same(model, loaded)


@pytest.mark.parametrize("ref", ["modelpress.errors:BadInputError", "modelpress.artifact.packed:PackedModule",
                                 "os:system", "modelpress.nothing:X"])
def test_swap_class_must_be_a_modelpress_packed_module(tmp_path, ref):
    folder = save(_with_tiny(build("lenet-300-100")), tmp_path / "a")
    man = _manifest(folder)
    man["swaps"][0]["class"] = ref
    (folder / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(BadInputError):
        load(folder)


def test_quantized_modules_roundtrip(tmp_path):
    q = pytest.importorskip("modelpress.quantization.modules")
    torch.manual_seed(0)
    model = build("lenet-5")
    model.fc1 = q.QuantLinear.from_float(model.fc1, q.WeightSpec(bits=4, granularity="group"))
    model.conv2 = q.QuantConv2d.from_float(model.conv2, q.WeightSpec(bits=8, symmetric=False))
    model.fc2 = q.HalfLinear.from_float(model.fc2)
    folder = save(model, tmp_path / "a")
    classes = {s["path"]: s["class"] for s in _manifest(folder)["swaps"]}
    assert classes == {"conv2": "modelpress.quantization.modules:QuantConv2d",
                       "fc1": "modelpress.quantization.modules:QuantLinear",
                       "fc2": "modelpress.quantization.modules:HalfLinear"}
    loaded = load(folder)
    _assert_same(model, loaded)
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


def test_callable_source_with_tied_weights(tmp_path):
    model = make_tied(40)
    folder = save(model, tmp_path / "a")
    assert _manifest(folder)["aliases"] == {"out.weight": "emb.weight"}
    loaded = load(folder)
    assert loaded.out.weight.shape == (40, 8)
    _assert_same(model, loaded)


def test_callable_source_into_stdlib_is_refused(tmp_path):
    folder = save(build("lenet-300-100"), tmp_path / "a")
    marker = tmp_path / "pwned"
    man = _manifest(folder)
    man["source"] = {"kind": "callable", "ref": "os:system", "kwargs": {"command": f"touch {marker}"}}
    (folder / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(BadInputError, match="refusing"):
        load(folder)
    assert not marker.exists()


# ---- refusals ------------------------------------------------------------------------------------------


def test_model_without_source_is_refused(tmp_path):
    with pytest.raises(BadInputError, match="module:function|built-in"):
        save(nn.Linear(2, 2), tmp_path / "a")


def test_save_never_writes_into_user_folders(tmp_path):
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("keep me")
    with pytest.raises(BadInputError, match="not a modelpress artifact"):
        save(build("lenet-300-100"), user, overwrite=True)
    assert (user / "notes.txt").read_text() == "keep me" and len(list(user.iterdir())) == 1
    (tmp_path / "file").write_text("x")
    with pytest.raises(BadInputError):
        save(build("lenet-300-100"), tmp_path / "file")


def test_overwrite_replaces_only_an_artifact(tmp_path):
    folder = save(build("lenet-300-100"), tmp_path / "a")
    (folder / "README.txt").write_text("user file")
    with pytest.raises(BadInputError, match="overwrite"):
        save(build("lenet-300-100"), folder)
    torch.manual_seed(3)
    newer = build("lenet-300-100")
    with torch.no_grad():  # compressible, so the data file changes name to .zst
        for p in newer.parameters():
            p.copy_(torch.round(p * 2) / 2)
    save(newer, folder, overwrite=True)
    assert sorted(f.name for f in folder.iterdir()) == ["README.txt", "manifest.json", "weights.safetensors.zst"]
    _assert_same(newer, load(folder))


@pytest.fixture
def saved(tmp_path) -> Path:
    return save(build("lenet-300-100"), tmp_path / "a")


def _edit(folder: Path, fn) -> None:
    man = _manifest(folder)
    fn(man)
    (folder / "manifest.json").write_text(json.dumps(man))


def test_missing_folder_or_manifest(tmp_path, saved):
    with pytest.raises(BadInputError, match="does not exist"):
        load(tmp_path / "nope")
    (saved / "manifest.json").unlink()
    with pytest.raises(BadInputError, match="manifest.json"):
        load(saved)


def test_not_an_artifact(saved):
    _edit(saved, lambda m: m.update(format="something-else"))
    with pytest.raises(BadInputError, match="not a modelpress artifact"):
        load(saved)
    (saved / "manifest.json").write_text("{ not json")
    with pytest.raises(BadInputError, match="JSON"):
        load(saved)


def test_future_format_version(saved):
    _edit(saved, lambda m: m.update(format_version=2, modelpress_version="9.0"))
    with pytest.raises(BadInputError, match="newer modelpress.*upgrade"):
        load(saved)


def test_flipped_byte_in_weights(saved):
    f = saved / "weights.safetensors"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0x01
    f.write_bytes(bytes(data))
    with pytest.raises(BadInputError, match="SHA-256"):
        load(saved)


def test_truncated_weights_even_with_matching_hash(saved):
    import hashlib

    f = saved / "weights.safetensors"
    data = f.read_bytes()[:1000]
    f.write_bytes(data)
    with pytest.raises(BadInputError, match="SHA-256"):
        load(saved)
    _edit(saved, lambda m: m["files"]["weights.safetensors"].update(sha256=hashlib.sha256(data).hexdigest()))
    with pytest.raises(BadInputError, match="safetensors"):
        load(saved)


def test_missing_weights_file(saved):
    (saved / "weights.safetensors").unlink()
    with pytest.raises(BadInputError, match="missing"):
        load(saved)


def test_tampered_manifest_tensors(saved):
    _edit(saved, lambda m: m["tensors"].pop("fc2.weight"))
    with pytest.raises(BadInputError, match="fc2.weight"):
        load(saved)
    _edit(saved, lambda m: m["tensors"].update({"fc2.weight": {"encoding": "dense", "shape": [1, 2],
                                                                 "dtype": "float32"}}))
    with pytest.raises(BadInputError):
        load(saved)


def test_tampered_manifest_attrs_cannot_replace_methods(saved):
    _edit(saved, lambda m: m["shapes"].update({"fc1": {"tensors": {}, "attrs": {"forward": 3}}}))
    with pytest.raises(BadInputError, match="forward"):
        load(saved)


def test_weight_file_path_must_stay_inside(saved):
    _edit(saved, lambda m: m.update(files={"../x.safetensors": {"sha256": "0"}}))
    with pytest.raises(BadInputError, match="outside"):
        load(saved)


def test_bake_keeps_source_and_leaves_original():
    model = build("lenet-300-100")
    parametrize.register_parametrization(model.fc2, "weight", nn.Identity())
    baked = bake(model)
    assert not parametrize.is_parametrized(baked.fc2) and parametrize.is_parametrized(model.fc2)
    assert get_source(baked) == get_source(model) is not None
    assert torch.equal(baked.fc2.weight, model.fc2.weight)
