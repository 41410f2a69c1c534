"""The `Share` step on a trained LeNet-300-100 (digits): clustering, hashing, tying, the artifact."""

from __future__ import annotations

import copy
import tempfile

import pytest
import torch
from torch import nn

import modelpress as mp
from modelpress.artifact import folder_bytes, load, save
from modelpress.pruning.config import Prune
from modelpress.select import by_name, exclude
from modelpress.sharing.config import Share
from modelpress.sharing.modules import ClusteredLinear, HashedLinear
from modelpress.tasks.train import evaluate


@pytest.fixture
def mlp(trained_mlp):
    return copy.deepcopy(trained_mlp)


def test_every_clustered_layer_keeps_cosine_099_at_5_bits(mlp, digits):
    log = mp.compress_(mlp, Share(bits=5), task=digits)
    layers = log.details["layers"]
    assert sorted(layers) == ["fc1", "fc2", "fc3"]
    assert all(isinstance(mlp.get_submodule(n), ClusteredLinear) for n in layers)
    for name, row in layers.items():
        assert row["cosine_before_finetune"] >= 0.99, (name, row)
    assert [(s.module, s.to_type) for s in log.swapped] == [(n, "ClusteredLinear") for n in layers]


def test_pruned_then_clustered_keeps_zeros_and_trains_only_codebooks(mlp, digits):
    mp.compress_(mlp, Prune(sparsity=0.8, scope="global"), task=digits)
    zeros = {n: (mlp.get_submodule(n).weight == 0) for n in ("fc1", "fc2")}
    fc3 = mlp.fc3.weight.detach().clone()
    log = mp.compress_(mlp, Share(bits=4, epochs=1, lr=1e-3), task=digits, select=exclude("fc3"),
                       progress=False)
    for n, z in zeros.items():
        m = mlp.get_submodule(n)
        assert m.zero_code and torch.equal(m.weight == 0, z)
    assert torch.equal(mlp.fc3.weight, fc3)  # declined layer: bit-identical through the fine-tuning
    assert log.details["finetune_losses"] and evaluate(mlp, digits) > 0.85


def test_save_load_round_trip_is_bit_exact_and_smaller(mlp, digits):
    mp.compress_(mlp, Prune(sparsity=0.9, scope="global"), task=digits)
    with tempfile.TemporaryDirectory() as tmp:
        pruned_bytes = folder_bytes(save(mlp, f"{tmp}/pruned"))
        log = mp.compress_(mlp, Share(bits=5), task=digits)
        path = save(mlp, f"{tmp}/shared")
        back = load(path)
        assert folder_bytes(path) < 0.6 * pruned_bytes
    x = digits.test.inputs[0][:50]
    assert torch.equal(back(x), mlp(x))
    stages = log.details["stages"]
    assert [s["stage"].split(" ")[0] for s in stages] == ["before", "sharing", "entropy"]
    assert stages[2]["bytes"] <= stages[1]["bytes"] < stages[0]["bytes"]


def test_custom_forward_and_tiny_layers_are_skipped_with_reasons(mlp, digits):
    class Scaled(nn.Linear):
        def forward(self, x):
            return 2 * super().forward(x)

    old = mlp.fc2
    mlp.fc2 = Scaled(old.in_features, old.out_features)
    log = mp.compress_(mlp, Share(bits=5, min_weights=5000), task=digits)
    why = {s.module: s.why for s in log.skipped}
    assert "overrides forward" in why["fc2"] and "min_weights" in why["fc3"]
    assert list(log.details["layers"]) == ["fc1"]


def test_int8_codebook_values(mlp, digits):
    log = mp.compress_(mlp, Share(bits=5, codebook="int8"), task=digits)
    assert {r["codebook"] for r in log.details["layers"].values()} == {"int8"}
    tensors, _ = mlp.fc1.pack()
    q = tensors["codebook"]
    assert q.dtype == torch.int8 and int(q.abs().max()) == 127  # symmetric: the largest |value| is 127
    assert torch.equal(q.float() * tensors["codebook_scale"], mlp.fc1.codebook.detach())


def test_hashing_stores_the_ratio_of_parameters(mlp, digits):
    log = mp.compress_(mlp, Share(method="hash", ratio=0.125, epochs=1, lr=1e-3), task=digits, progress=False,
                       select=by_name("fc[12]"))
    assert isinstance(mlp.fc1, HashedLinear)
    assert mlp.fc1.buckets.numel() == round(0.125 * 64 * 300)
    assert log.details["layers"]["fc2"]["buckets"] == 3750
    assert evaluate(mlp, digits) > 0.8
    with tempfile.TemporaryDirectory() as tmp:
        back = load(save(mlp, f"{tmp}/h"))
    x = digits.test.inputs[0][:20]
    assert torch.equal(back(x), mlp(x))


def test_tying_shares_one_module_and_counts_it_once():
    model = nn.Sequential(*[nn.Linear(16, 16) for _ in range(4)])
    mean = torch.stack([model[i].weight for i in (0, 1)]).mean(0)
    log = mp.compress_(model, Share(method="tie", blocks=r"\d+", unique=2))
    assert model[0] is model[1] and model[2] is model[3] and model[1] is not model[2]
    assert torch.allclose(model[0].weight, mean)
    assert log.details["params_after"] == log.details["params_before"] // 2


def test_onnx_export_holds_the_decoded_weights(mlp, digits, tmp_path):
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from modelpress.artifact.onnx import export_onnx
    from modelpress.measure.runtime import ort_predict

    mp.compress_(mlp, Prune(sparsity=0.9, scope="global"), task=digits)
    mp.compress_(mlp, Share(bits=5), task=digits)
    path = export_onnx(mlp, digits.example_inputs, tmp_path / "m.onnx")
    inits = [numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer]
    fc1 = mlp.fc1.weight.detach().numpy()
    assert any(a.shape in (fc1.shape, fc1.T.shape) and np.array_equal(a.reshape(-1) if a.shape == fc1.shape
               else a.T.reshape(-1), fc1.reshape(-1)) for a in inits)
    x = digits.test.inputs
    out = ort_predict(path, threads=1)(x)
    assert torch.allclose(out, mlp.eval()(*x), atol=1e-4)


def test_nothing_selected_is_a_note_not_a_crash(mlp, digits):
    for method in ("cluster", "hash"):
        log = mp.compress_(mlp, Share(method=method, epochs=1), task=digits, select=by_name("nothing"))
        assert "nothing" in log.details["note"] and not log.swapped
