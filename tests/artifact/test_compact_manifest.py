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
