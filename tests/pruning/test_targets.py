"""Pruning uses the one targeting rule: subclasses are pruned and counted, unhandled layers are reported,
a step that removes nothing says so, and tied weights stay tied."""

from __future__ import annotations

import copy

import torch
from torch import nn

from modelpress.artifact.baking import bake
from modelpress.context import StepContext
from modelpress.measure.size import count_params
from modelpress.pruning import Prune, apply_prune
from modelpress.pruning.masks import get_mask
from modelpress.pruning.structured import plan_structured, zero_plan
from modelpress.source import attach_source
from tests.custom_layers import MatmulLayer, SameConv2d

IMG = (torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(3)),)


class SameNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = SameConv2d(1, 16, 4)
        self.c2 = SameConv2d(16, 16, 3)
        self.mix = MatmulLayer(16)
        self.fc = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.c2(torch.relu(self.c1(x))))  # (N, 16, 8, 8): "SAME" keeps 8×8
        return self.fc(self.mix(x.mean((2, 3))))


def _with_source(model: nn.Module) -> nn.Module:
    # a source that gives example inputs of the right shape (structured pruning traces the model)
    return attach_source(model, {"kind": "builtin", "name": "none", "kwargs": {"input_shape": [1, 8, 8]}})


def test_same_padding_subclass_is_channel_pruned_and_counted():
    torch.manual_seed(0)
    model = _with_source(SameNet().eval())
    reference = copy.deepcopy(model)
    log = apply_prune(model, Prune(structure="channel", sparsity=0.5), StepContext())
    assert log.details["units"] == {"c1": {"kind": "channel", "before": 16, "after": 8}}
    assert isinstance(model.c1, SameConv2d) and model.c1.out_channels == 8 and model.c2.in_channels == 8
    why = {s.module: s.why for s in log.skipped}
    assert set(why) == {"mix"} and "MatmulLayer" in why["mix"] and "`c2`" in why["mix"]  # c2 feeds it
    # the removed model equals the masked one: same 8 channels zeroed in place, padding kept in both
    masked = copy.deepcopy(reference)
    plan = plan_structured(masked, Prune(structure="channel", sparsity=0.5), IMG)
    zero_plan(plan)
    with torch.no_grad():
        torch.testing.assert_close(model(*IMG), masked(*IMG), rtol=1e-5, atol=1e-5)
        assert model.c1(IMG[0]).shape == (4, 8, 8, 8)  # "SAME": the spatial size is kept


def test_weight_pruning_masks_subclasses_and_reports_what_it_cannot_handle():
    model = nn.Sequential(SameNet(), nn.GRU(3, 4))
    log = apply_prune(model, Prune(sparsity=0.5), StepContext())
    assert set(log.details["layers"]) == {"0.c1", "0.c2", "0.fc"}
    assert float((model[0].c1.weight == 0).float().mean()) == 0.5
    assert [s.module for s in log.skipped] == ["0.mix", "1"]
    assert "MatmulLayer" in log.skipped[0].why and "GRU" in log.skipped[1].why


def test_a_step_that_removes_nothing_says_so(trained_mlp, digits):
    model = copy.deepcopy(trained_mlp)
    log = apply_prune(model, Prune(structure="neuron", sparsity=0.001), StepContext(task=digits))
    assert log.details["changed"] is False and "removed nothing" in log.details["note"]
    assert model.fc1.out_features == 300
    log = apply_prune(model, Prune(sparsity=0.0), StepContext())
    assert log.details["changed"] is False and "removes no weight" in log.details["note"]
    log = apply_prune(model, Prune(structure="neuron", sparsity=0.5), StepContext(task=digits))
    assert "changed" not in log.details and model.fc1.out_features == 150


def tiny_tied_llama() -> nn.Module:
    """A 2-layer Llama with random weights whose output layer shares the input embedding (no download)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    return LlamaForCausalLM(cfg).eval()


def n_zero(model: nn.Module) -> int:
    """Zero weights, each tensor once (a tied table is one tensor)."""
    return sum(int((p == 0).sum()) for p in model.parameters())


TOKENS = torch.randint(0, 96, (2, 12), generator=torch.Generator().manual_seed(0))


def _logits(model: nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=TOKENS).logits


def test_tied_weights_stay_tied_through_weight_pruning():
    model = tiny_tied_llama()
    before = count_params(model)[0]
    emb, head = model.model.embed_tokens, model.lm_head
    assert head.weight is emb.weight  # tied to begin with
    log = apply_prune(model, Prune(sparsity=0.5), StepContext())
    assert log.details["tied"] == {"lm_head": ["model.embed_tokens"]}
    # one tensor, one mask: both users see the pruned table, and it is counted once
    assert torch.equal(head.weight, emb.weight) and float((emb.weight == 0).float().mean()) == 0.5
    assert get_mask(emb) is not None and torch.equal(get_mask(emb).mask, get_mask(head).mask)
    assert head.parametrizations["weight"].original is emb.parametrizations["weight"].original
    # the model that is returned computes exactly what is measured and saved (its baked form), whose
    # table is still one tensor: stored once, counted once
    baked = bake(model)
    torch.testing.assert_close(_logits(model), _logits(baked), rtol=0, atol=0)
    assert baked.lm_head.weight is baked.model.embed_tokens.weight
    assert count_params(model) == (before, before - n_zero(baked))


def test_tied_weights_stay_tied_through_quantization():
    from modelpress.measure.size import params
    from modelpress.quantization import Quantize, apply_quantize

    model = tiny_tied_llama()
    before = params(model)
    for mode in ("int8-dynamic", "int4-weight"):
        q = copy.deepcopy(model)
        log = apply_quantize(q, Quantize(mode=mode, quantize_embeddings=True), StepContext(progress=False))
        why = {s.module: s.why for s in log.skipped}
        assert "tied" in why["lm_head"] and "tied" in why["model.embed_tokens"]
        assert q.lm_head.weight is q.model.embed_tokens.weight and params(q) == before
        assert len(log.swapped) == 2 * 7  # q, k, v, o, gate, up, down in each of the 2 layers
