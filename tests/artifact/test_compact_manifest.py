"""manifest.json is written compact (it counts in the artifact's bytes); indented manifests of earlier
versions still load."""

from __future__ import annotations

import json

import torch

from modelpress.artifact import load, save
from modelpress.artifact.manifest import manifest_bytes
from modelpress.tasks.models import build


def test_manifest_is_compact_sorted_json():
    data = manifest_bytes({"b": [1, 2], "a": {"y": "z"}})
    assert data == b'{"a":{"y":"z"},"b":[1,2]}\n'


def test_saved_manifest_is_compact_and_an_indented_one_still_loads(tmp_path, assert_same):
    torch.manual_seed(0)
    model = build("lenet-5")
    steps = [{"prune": {"sparsity": 0.9, "structure": "weight"}}, {"share": {"bits": 5}}]
    folder = save(model, tmp_path / "art", steps=steps)
    text = (folder / "manifest.json").read_text()
    manifest = json.loads(text)
    indented = json.dumps(manifest, indent=1, sort_keys=True) + "\n"
    assert "\n" not in text[:-1] and ": " not in text and len(text) < 0.8 * len(indented)
    # an artifact written by the earlier, indented writer: same format version, loads the same model
    (folder / "manifest.json").write_text(indented)
    assert_same(model, load(folder))


def test_tied_blocks_are_stored_once_and_load_back(tmp_path):
    # cross-layer tying (`share: {method: tie}`) makes one block the child of two paths
    from modelpress.artifact.saving import encoded_bytes
    from modelpress.pipeline import compress_
    from modelpress.sharing.config import Share
    from tests.artifact.test_tied_weights import VOCAB, tiny_llama

    model = tiny_llama().eval()
    untied = encoded_bytes(model)
    compress_(model, Share(method="tie", blocks=r"lm\.model\.layers\.\d+", unique=1))
    assert model.lm.model.layers[0] is model.lm.model.layers[1]
    folder = save(model, tmp_path / "tied")
    layer_bytes = sum(p.numel() * 4 for p in model.lm.model.layers[0].parameters())
    assert encoded_bytes(model) < untied - 0.9 * layer_bytes  # the second layer is not stored again
    loaded = load(folder, trust_source=True)
    ids = torch.randint(0, VOCAB, (2, 8), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded(ids), model(ids))
