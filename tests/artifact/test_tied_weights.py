"""Tied weights stay tied through save / load, are stored once and counted once (a tied-embedding Llama)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from modelpress.artifact import load, save
from modelpress.measure.size import count_params
from modelpress.source import attach_source

VOCAB, HIDDEN = 128, 32


class LastToken(nn.Module):
    """A causal LM's next-token logits ``(n, vocab)`` at the last position."""

    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        self.lm = lm

    def forward(self, ids: Tensor) -> Tensor:
        return self.lm(input_ids=ids).logits[:, -1]


def tiny_llama() -> nn.Module:
    """A 2-layer Llama with tied input / output embeddings, from a transformers config (no download)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      intermediate_size=64, vocab_size=VOCAB, tie_word_embeddings=True,
                      max_position_embeddings=64)
    torch.manual_seed(0)
    return attach_source(LastToken(LlamaForCausalLM(cfg)), {"kind": "callable", "ref": f"{__name__}:tiny_llama",
                                                            "kwargs": {}})


def test_tied_embedding_is_stored_once_and_stays_tied(tmp_path, assert_same, manifest_of):
    model = tiny_llama().eval()
    emb, head = model.lm.model.embed_tokens.weight, model.lm.lm_head.weight
    assert head is emb
    folder = save(model, tmp_path / "a")
    man = manifest_of(folder)
    assert man["aliases"] == {"lm.lm_head.weight": "lm.model.embed_tokens.weight"}
    assert "lm.lm_head.weight" not in man["tensors"]
    loaded = load(folder, trust_source=True)
    assert loaded.lm.lm_head.weight is loaded.lm.model.embed_tokens.weight
    assert_same(model, loaded)
    ids = torch.randint(0, VOCAB, (3, 10), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(model(ids), loaded(ids))
        loaded.lm.model.embed_tokens.weight[0, 0] += 1.0  # one tensor: a change shows through both names
    assert loaded.lm.lm_head.weight[0, 0] == loaded.lm.model.embed_tokens.weight[0, 0]


def test_tied_embedding_counts_once():
    model = tiny_llama()
    unique = sum(p.numel() for p in model.parameters())  # parameters() yields a shared tensor once
    listed = sum(t.numel() for t in model.state_dict().values())
    assert listed - unique == VOCAB * HIDDEN  # the state dict names the table twice
    assert count_params(model)[0] == unique
