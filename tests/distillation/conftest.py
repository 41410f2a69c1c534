"""Tiny BERT classifiers built from a config (no download) and a tiny text task for them."""

import pytest
import torch

from modelpress.source import attach_source
from modelpress.tasks.metrics import ACCURACY, cross_entropy
from modelpress.tasks.minilm import MiniLMClassifier
from modelpress.tasks.task import Split, Task


def tiny_bert(hidden: int = 32, layers: int = 4, heads: int = 2, classes: int = 3, seed: int = 0) -> MiniLMClassifier:
    from transformers import BertConfig, BertModel

    cfg = BertConfig(vocab_size=50, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                     intermediate_size=2 * hidden, max_position_embeddings=32)
    torch.manual_seed(seed)
    model = MiniLMClassifier(BertModel(cfg), classes)
    source = {"kind": "hf", "config": cfg.to_dict(), "wrapper": "encoder-mean-pool", "num_classes": classes}
    return attach_source(model, source).eval()


def tiny_text_task(n: int = 64, tokens: int = 12, classes: int = 3) -> Task:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 50, (n, tokens), generator=g)
    mask = torch.ones_like(ids)
    mask[::2, 9:] = 0  # every other example padded after 9 tokens
    y = ids[:, 0] % classes
    split = Split((ids, mask), y, "train")
    return Task(name="tiny-text", description="random tokens, class = first token mod 3", train=split,
                calibration=split, test=Split((ids, mask), y, "test"), metric=ACCURACY, loss=cross_entropy,
                model=lambda name=None: tiny_bert(), default_model="tiny-bert", batch_size=16)


@pytest.fixture
def text_task() -> Task:
    return tiny_text_task()
