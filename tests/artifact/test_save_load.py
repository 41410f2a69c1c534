"""save → load round trips bit-exactly; damaged, foreign or future artifacts are refused clearly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from modelpress.artifact import bake, folder_bytes, load, save
from modelpress.artifact.packing import ENTRY_OVERHEAD_BYTES, bitmask_nbytes
from modelpress.errors import BadInputError
from modelpress.source import get_source
from modelpress.tasks.models import build


@pytest.mark.parametrize("name", ["lenet-300-100", "lenet-5", "resnet-s"])
def test_roundtrip_builtin_is_bit_exact(tmp_path, name, assert_same, manifest_of):
    torch.manual_seed(0)
    model = build(name)
    if name == "resnet-s":  # non-trivial BN statistics, as after training
        model.train()
        with torch.no_grad():
            model(torch.randn(8, 1, 28, 28))
    steps = [{"name": "prune", "config": {"sparsity": 0.5}}]
    folder = save(model, tmp_path / "art", steps=steps)
    loaded = load(folder)
    assert_same(model, loaded)
    assert get_source(loaded) == get_source(model)
    assert not loaded.training
    x = torch.randn(4, 1, 28, 28)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    man = manifest_of(folder)
    assert man["format"] == "modelpress-artifact" and man["format_version"] == 1
    assert isinstance(man["modelpress_version"], str) and man["steps"] == steps
    assert man["shapes"] == {} and man["swaps"] == []
    assert folder_bytes(folder) == sum(f.stat().st_size for f in folder.iterdir())


def test_save_does_not_touch_the_callers_model_and_bakes_masks(tmp_path, multiply_mask):
    torch.manual_seed(0)
    model = build("lenet-300-100")
    mask = (torch.rand_like(model.fc1.weight) > 0.8).float()
    multiply_mask(model.fc1, mask)
    expected = model.fc1.weight.detach().clone()
    loaded = load(save(model, tmp_path / "a"))
    assert parametrize.is_parametrized(model.fc1)  # caller's model untouched
    assert torch.equal(model.fc1.weight, expected)
    assert torch.equal(loaded.fc1.weight, expected)
    assert set(loaded.state_dict()) == set(build("lenet-300-100").state_dict())


def test_ninety_percent_zeros_is_smaller_as_predicted(tmp_path, assert_same, manifest_of):
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
    encodings = {k: v["encoding"] for k, v in manifest_of(sparse_dir)["tensors"].items()}
    assert encodings["fc1.weight"] == encodings["fc2.weight"] == encodings["fc3.weight"] == "bitmask"
    assert encodings["fc1.bias"] == "dense"
    assert_same(sparse, load(sparse_dir))


def test_weight_sharing_gets_zstd(tmp_path, assert_same, manifest_of):
    torch.manual_seed(0)
    model = build("lenet-300-100")
    with torch.no_grad():
        for p in model.parameters():  # 16 shared values per tensor, like Deep Compression's clustering
            levels = torch.linspace(float(p.min()), float(p.max()), 16)
            p.copy_(levels[torch.randint(0, 16, p.shape)])
    folder = save(model, tmp_path / "a")
    files = manifest_of(folder)["files"]
    assert list(files) == ["weights.safetensors.zst"] and files["weights.safetensors.zst"]["compression"] == "zstd"
    assert folder_bytes(folder) < 0.3 * sum(p.numel() * 4 for p in model.parameters())
    assert_same(model, load(folder))

def test_half_precision_dtypes_survive(tmp_path, assert_same):
    model = build("lenet-300-100").to(torch.bfloat16)
    loaded = load(save(model, tmp_path / "a"))
    assert loaded.fc1.weight.dtype == torch.bfloat16
    assert_same(model, loaded)

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


def test_overwrite_replaces_only_an_artifact(tmp_path, assert_same):
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
    assert_same(newer, load(folder))


@pytest.fixture
def saved(tmp_path) -> Path:
    return save(build("lenet-300-100"), tmp_path / "a")


def _edit(folder: Path, fn) -> None:
    man = json.loads((folder / "manifest.json").read_text())
    fn(man)
    (folder / "manifest.json").write_text(json.dumps(man))


def test_missing_folder_ormanifest_of(tmp_path, saved, manifest_of):
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

def test_leftovers_of_a_crashed_save_do_not_block_the_next(tmp_path, assert_same):
    folder = tmp_path / "a"
    folder.mkdir()
    (folder / ".weights.safetensors.tmp").write_bytes(b"half written")
    model = build("lenet-300-100")
    save(model, folder)
    assert sorted(f.name for f in folder.iterdir()) == ["manifest.json", "weights.safetensors"]
    assert_same(model, load(folder / "manifest.json"))
