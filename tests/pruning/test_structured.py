"""Structured pruning: exact counts, equivalence with the masked model, BatchNorm / residual / heads,
rounding, criteria, skipped custom modules."""

from __future__ import annotations

import copy
import os

import pytest
import torch
from torch import nn

from modelpress.context import StepContext
from modelpress.errors import BadInputError
from modelpress.pruning import Prune, apply_prune
from modelpress.pruning.structured import find_attention, plan_structured, zero_plan
from modelpress.source import attach_source
from modelpress.tasks.models import build

IMG = (torch.randn(6, 1, 28, 28, generator=torch.Generator().manual_seed(1)),)


def _randomize_bn(model: nn.Module) -> nn.Module:
    """Non-trivial BatchNorm statistics and scales, so masked == removed is a real check."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data = torch.rand(m.num_features, generator=g) + 0.5
            m.bias.data = torch.randn(m.num_features, generator=g) * 0.1
            m.running_mean = torch.randn(m.num_features, generator=g) * 0.1
            m.running_var = torch.rand(m.num_features, generator=g) + 0.5
    return model.eval()


def tiny_bert(num_classes: int = 3) -> nn.Module:
    """A 2-layer, 4-head BERT (hidden 32, FFN 64) with the MiniLM classifier wrapper and an hf source."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import BertConfig, BertModel

    from modelpress.tasks.minilm import MiniLMClassifier

    cfg = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=64)  # fmt: skip
    torch.manual_seed(0)
    model = MiniLMClassifier(BertModel(cfg), num_classes).eval()
    return attach_source(model, {"kind": "hf", "config": cfg.to_dict(), "wrapper": "encoder-mean-pool",
                                 "num_classes": num_classes})  # fmt: skip


TOKENS = (torch.randint(0, 100, (3, 12), generator=torch.Generator().manual_seed(2)),
          torch.tensor([[1] * 12, [1] * 7 + [0] * 5, [1] * 3 + [0] * 9]))  # fmt: skip


def test_neuron_counts_are_exact_and_the_classifier_is_kept():
    model = build("lenet-300-100")
    log = apply_prune(model, Prune(structure="neuron", sparsity=0.3), StepContext())
    assert (model.fc1.out_features, model.fc2.out_features, model.fc3.out_features) == (210, 70, 10)
    assert (model.fc2.in_features, model.fc3.in_features) == (210, 70)
    assert log.details["units"] == {"fc1": {"kind": "neuron", "before": 300, "after": 210},
                                    "fc2": {"kind": "neuron", "before": 100, "after": 70}}  # fmt: skip
    assert log.details["params_after"] == sum(p.numel() for p in model.parameters()) < 266_610
    assert model(*IMG).shape == (6, 10)


CASES = [
    ("lenet-300-100", Prune(structure="neuron", sparsity=0.6), IMG),
    ("resnet-s", Prune(structure="channel", sparsity=0.5), IMG),
    ("resnet-s", Prune(structure="channel", sparsity=0.4, scope="global", round_to=8), IMG),
    ("resnet-s", Prune(structure="channel", sparsity=0.5, criterion="bn_scale", scope="global"), IMG),
    ("tiny-bert", Prune(structure="head", sparsity=0.5, ffn=0.25), TOKENS),
    ("tiny-bert", Prune(structure="head", sparsity=0.5, scope="global"), TOKENS),
]


@pytest.mark.parametrize(("name", "cfg", "inputs"), CASES)
def test_removed_model_equals_the_masked_model(name, cfg, inputs):
    base = tiny_bert() if name == "tiny-bert" else _randomize_bn(build(name))
    masked, removed = copy.deepcopy(base), copy.deepcopy(base)
    zero_plan(plan_structured(masked, cfg, inputs))
    log = apply_prune(removed, cfg, StepContext(progress=False))
    assert log.details["params_after"] < log.details["params_before"]
    with torch.no_grad():
        a, b, full = masked(*inputs), removed(*inputs), base(*inputs)
    assert a.shape == b.shape == full.shape  # the classifier's outputs are never pruned
    assert torch.allclose(a, b, atol=1e-5, rtol=0), (a - b).abs().max()
    assert not torch.allclose(a, full, atol=1e-3)  # something really was removed


@pytest.mark.parametrize(
    ("round_to", "sparsity", "widths"),
    [(8, 0.3, [24, 48, 88]), (16, 0.5, [16, 32, 64])],  # round((1 - s) w) to the nearest multiple
)
def test_residual_groups_stay_consistent_and_round_to(round_to, sparsity, widths):
    model = build("resnet-s")  # stage widths 32 / 64 / 128
    apply_prune(model, Prune(structure="channel", sparsity=sparsity, round_to=round_to), StepContext())
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert all(c.out_channels % round_to == 0 for c in convs)
    assert [model.layer1[0].bn2.num_features, model.layer2[0].bn2.num_features,
            model.layer3[0].bn2.num_features] == widths  # fmt: skip
    # a residual stage shares one width: its block outputs and its shortcut agree
    assert model.layer2[0].shortcut[0].out_channels == model.layer2[1].conv2.out_channels == widths[1]
    assert model.fc.in_features == widths[2] and model(*IMG).shape == (6, 10)


def test_global_scope_removes_the_exact_total():
    model = build("resnet-s")
    plan = plan_structured(model, Prune(structure="channel", sparsity=0.4, scope="global"), IMG)
    total = sum(u.size for u in plan.units)
    assert sum(len(u.remove) for u in plan.units) == round(0.4 * total)
    assert len({len(u.remove) / u.size for u in plan.units}) > 1  # layers differ under one threshold


def test_bn_scale_removes_the_planted_channels():
    model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 3),
                          nn.Flatten(), nn.LazyLinear(3))  # fmt: skip
    model(*IMG)
    model.eval()
    model[1].weight.data = torch.tensor([1.0, 0.01, 1.2, 0.02, 0.9, 1.1, 0.03, 1.3])
    plan = plan_structured(model, Prune(structure="channel", sparsity=0.375, criterion="bn_scale"), IMG)
    assert [u.remove for u in plan.units if u.name == "0"] == [[1, 3, 6]]


def test_taylor_needs_a_task_and_clears_gradients(trained_mlp, digits):
    with pytest.raises(BadInputError, match="taylor"):
        plan_structured(copy.deepcopy(trained_mlp), Prune(structure="neuron", criterion="taylor"),
                        digits.example_inputs)  # fmt: skip
    model = copy.deepcopy(trained_mlp)
    apply_prune(model, Prune(structure="neuron", sparsity=0.5, criterion="taylor"), StepContext(task=digits))
    assert (model.fc1.out_features, model.fc2.out_features) == (150, 50)
    assert all(p.grad is None for p in model.parameters())


def test_iterative_structured_reaches_the_target(trained_mlp, digits):
    model = copy.deepcopy(trained_mlp)
    cfg = Prune(structure="neuron", sparsity=0.5, schedule="iterative", steps=2, epochs=1)
    log = apply_prune(model, cfg, StepContext(task=digits, progress=False))
    assert (model.fc1.out_features, model.fc2.out_features) == (150, 50)
    assert log.details["units"]["fc1"] == {"kind": "neuron", "before": 300, "after": 150}
    assert len(log.details["round_losses"]) == 2


class Gain(nn.Module):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.g = nn.Parameter(torch.linspace(0.5, 1.5, n))

    def forward(self, x):
        return x * self.g.view(1, -1, 1, 1)


def test_custom_module_is_skipped_and_reported_not_a_crash():
    model = nn.Sequential(nn.Conv2d(1, 8, 3), Gain(8), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3)).eval()  # fmt: skip
    model = attach_source(model, {"kind": "builtin", "name": "none", "kwargs": {"input_shape": [1, 28, 28]}})
    log = apply_prune(model, Prune(structure="channel", sparsity=0.5), StepContext())
    assert [s.module for s in log.skipped] == ["1"]
    assert "custom module type Gain" in log.skipped[0].why and "`0`" in log.skipped[0].why
    assert model[0].out_channels == 8 and model[1].g.numel() == 8  # left alone
    assert model[3].out_channels == 4  # the group it does not touch is pruned
    assert model(*IMG).shape == (6, 3)


def test_heads_update_the_attention_attributes():
    model = tiny_bert()
    log = apply_prune(model, Prune(structure="head", sparsity=0.5, ffn=0.25), StepContext())
    for _, att in find_attention(model):
        assert (att.num_attention_heads, att.attention_head_size, att.all_head_size) == (2, 8, 16)
        assert att.query.out_features == att.key.out_features == att.value.out_features == 16
    layer = model.encoder.encoder.layer[0]
    assert layer.attention.output.dense.in_features == 16 and layer.intermediate.dense.out_features == 48
    assert layer.output.dense.out_features == 32  # the hidden size (residual stream) is untouched
    kinds = sorted(v["kind"] for v in log.details["units"].values())
    assert kinds == ["ffn", "ffn", "head", "head"]
    assert model(*TOKENS).shape == (3, 3)


def test_structured_without_task_or_source_is_a_clear_error():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    with pytest.raises(BadInputError, match="needs example inputs"):
        apply_prune(model, Prune(structure="neuron"), StepContext())


def test_head_units_and_unsupported_attention_is_reported():
    from modelpress.pruning.sensitivity import layers_for

    names = layers_for(tiny_bert(), "head")
    prefix = "encoder.encoder.layer"
    assert names == [f"{prefix}.{i}.attention.self" for i in (0, 1)] + [
        f"{prefix}.{i}.intermediate.dense" for i in (0, 1)
    ]
    plan = plan_structured(MHAModel(), Prune(structure="head"), (torch.randn(2, 5, 8),))
    assert [s.module for s in plan.skipped] == ["mha"] and plan.units == []


class MHAModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.mha = nn.MultiheadAttention(8, 2, batch_first=True)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        return self.fc(self.mha(x, x, x)[0].mean(1))


def test_folding_weight_masks_leaves_earlier_copies_intact():
    """Structured pruning folds earlier weight masks; a deep copy taken before (a rollback backup, a
    timing snapshot) shares torch's parametrized class and must keep its masked weight."""
    model = build("lenet-300-100")
    apply_prune(model, Prune(structure="weight", sparsity=0.5), StepContext())
    backup = copy.deepcopy(model)
    apply_prune(model, Prune(structure="neuron", sparsity=0.3), StepContext())
    assert model.fc1.out_features == 210 and backup.fc1.weight.shape == (300, 784)
    assert float((backup.fc1.weight == 0).float().mean()) == pytest.approx(0.5, abs=1e-3)


@pytest.mark.parametrize(("per_layer", "ffn_kept"), [({"no-such-layer": 0.5}, 48), ({r".*intermediate\.dense": 0.5}, 32)])
def test_ffn_keeps_its_own_fraction_unless_a_per_layer_entry_matches(per_layer, ffn_kept):
    model = tiny_bert()  # 64 FFN neurons per layer; ffn=0.25 removes 16
    apply_prune(model, Prune(structure="head", sparsity=0.5, ffn=0.25, per_layer=per_layer), StepContext())
    assert model.encoder.encoder.layer[0].intermediate.dense.out_features == ffn_kept
