"""Swaps nest: a swapped module's children may be swapped again, and save / load keep every level."""

from __future__ import annotations

import pytest
import torch

import modelpress as mp
from modelpress.artifact import folder_bytes, load, rebuild, save
from modelpress.artifact.saving import encode, encoded_bytes
from modelpress.quantization.modules import QuantLinear
from modelpress.tasks.models import build

from ._nested import TwoLinear, factor


@pytest.fixture
def allow_test_swaps(monkeypatch):
    monkeypatch.setattr(rebuild, "ALLOWED_PACKED_PREFIXES", ("modelpress.", TwoLinear.__module__))


def _factored_quantized() -> torch.nn.Module:
    torch.manual_seed(0)
    model = build("lenet-300-100")
    model.fc2 = factor(model.fc2, 20)
    mp.compress_(model, mp.Quantize(mode="int8-dynamic"), progress=False)
    return model


def test_quantized_children_of_a_swap_keep_their_int8_codes(tmp_path, allow_test_swaps, assert_same, manifest_of):
    model = _factored_quantized()
    assert isinstance(model.fc2, TwoLinear) and isinstance(model.fc2.first, QuantLinear)
    folder = save(model, tmp_path / "a")
    swaps = {s["path"]: s["class"].rpartition(":")[2] for s in manifest_of(folder)["swaps"]}
    assert swaps == {"fc1": "QuantLinear", "fc2": "TwoLinear", "fc2.first": "QuantLinear",
                     "fc2.second": "QuantLinear", "fc3": "QuantLinear"}
    assert manifest_of(folder)["tensors"]["fc2.first.qweight"]["dtype"] == "int8"
    loaded = load(folder)
    assert isinstance(loaded.fc2, TwoLinear)
    assert isinstance(loaded.fc2.first, QuantLinear) and isinstance(loaded.fc2.second, QuantLinear)
    assert torch.equal(loaded.fc2.first.qweight, model.fc2.first.qweight)
    assert torch.equal(loaded.fc2.second.scale, model.fc2.second.scale)
    assert_same(model, loaded)
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), loaded(x))


def test_plain_children_of_a_swap_are_stored_as_state(tmp_path, allow_test_swaps, assert_same, manifest_of):
    torch.manual_seed(0)
    model = build("lenet-300-100")
    model.fc2 = factor(model.fc2, 20)
    folder = save(model, tmp_path / "a")
    man = manifest_of(folder)
    assert [s["path"] for s in man["swaps"]] == ["fc2"] and man["swaps"][0]["tensors"] == []
    assert man["tensors"]["fc2.first.weight"]["shape"] == [20, 300]
    loaded = load(folder)
    assert_same(model, loaded)


@pytest.mark.parametrize("kind", ["dense", "sparse", "nested"])
def test_encode_is_exactly_the_saved_bytes(tmp_path, kind, allow_test_swaps):
    torch.manual_seed(0)
    model = _factored_quantized() if kind == "nested" else build("lenet-300-100")
    if kind == "sparse":
        with torch.no_grad():
            model.fc1.weight[torch.rand_like(model.fc1.weight) < 0.9] = 0.0
    files, _ = encode(model)
    folder = save(model, tmp_path / "a")
    assert sorted(files) == sorted(p.name for p in folder.iterdir())
    for name, blob in files.items():
        assert (folder / name).read_bytes() == blob, name
    assert encoded_bytes(model) == folder_bytes(folder) == sum(map(len, files.values()))
    assert mp.measure.size.artifact_bytes(model) == folder_bytes(folder)
