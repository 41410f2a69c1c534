"""A structurally pruned model saves and loads: new shapes and head counts rebuilt, outputs identical."""

from __future__ import annotations

import pytest
import torch

from modelpress.artifact import load, save
from modelpress.context import StepContext
from modelpress.pruning import Prune, apply_prune
from modelpress.pruning.structured import find_attention
from modelpress.tasks.models import build

from .test_structured import IMG, TOKENS, _randomize_bn, tiny_bert


@pytest.mark.parametrize(
    ("name", "cfg", "inputs"),
    [
        ("lenet-300-100", Prune(structure="neuron", sparsity=0.5), IMG),
        ("resnet-s", Prune(structure="channel", sparsity=0.5, round_to=8), IMG),
        ("tiny-bert", Prune(structure="head", sparsity=0.5, ffn=0.5), TOKENS),
    ],
)
def test_structured_save_load_round_trip(name, cfg, inputs, tmp_path):
    model = tiny_bert() if name == "tiny-bert" else _randomize_bn(build(name))
    apply_prune(model, cfg, StepContext())
    back = load(save(model, tmp_path / "m")).eval()
    sd, sd2 = model.state_dict(), back.state_dict()
    assert sd.keys() == sd2.keys()
    assert all(torch.equal(sd[k], sd2[k]) for k in sd)
    for (_, a), (_, b) in zip(find_attention(model), find_attention(back), strict=True):
        assert (a.num_attention_heads, a.all_head_size) == (b.num_attention_heads, b.all_head_size)
    with torch.no_grad():
        assert torch.equal(model.eval()(*inputs), back(*inputs))
