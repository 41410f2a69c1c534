"""Task metrics and losses.

- :data:`ACCURACY`: top-1 accuracy in [0, 1] from a predict function returning logits ``(n, classes)``.
- :func:`cross_entropy`: the fine-tuning loss of every built-in task.
- :func:`embedding_cosine`: for text classifiers with ``embed(input_ids, attention_mask)`` — the mean
  cosine similarity of their sentence embeddings to those of the pretrained reference encoder. It tells
  how much of the encoder a compression step kept, beyond what the 5-way accuracy shows.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from modelpress.tasks.task import Metric, Predict, Split

__all__ = ["ACCURACY", "EMBED_EXAMPLES", "accuracy", "cross_entropy", "embedding_cosine"]

EMBED_EXAMPLES = 256  # test examples the embedding cosine uses: enough for a stable mean, cheap on CPU


def accuracy(predict: Predict, split: Split, batch_size: int = 512) -> float:
    """Fraction of ``split`` whose argmax of ``predict(inputs)`` equals the target (in [0, 1]).

    The split is fed ``batch_size`` examples at a time, so a predict function need not batch itself.
    """
    correct = 0
    for inputs, targets in split.batches(batch_size):
        out = torch.as_tensor(predict(inputs))
        correct += int((out.argmax(-1).cpu() == targets).sum())
    return correct / len(split)


ACCURACY = Metric("accuracy", accuracy)


def cross_entropy(outputs: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy of logits ``(n, classes)`` against class indices ``(n,)`` (int64)."""
    return F.cross_entropy(outputs, targets)


def _embed(model: nn.Module, split: Split, batch_size: int = 64) -> Tensor:
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    outs = []
    with torch.no_grad():
        for inputs, _ in split.batches(batch_size):
            outs.append(model.embed(*(t.to(device) for t in inputs)).float().cpu())
    model.train(was_training)
    return torch.cat(outs)


@functools.lru_cache(maxsize=2)
def _reference_embeddings(task_name: str) -> Tensor:
    # The pretrained encoder's embeddings of the first EMBED_EXAMPLES test examples, computed once.
    from modelpress.tasks.builtin import get
    from modelpress.tasks.minilm import build_minilm

    split = get(task_name).test.head(EMBED_EXAMPLES)
    return _embed(build_minilm(num_classes=2, pretrained=True), split)


def embedding_cosine(model: nn.Module, task_name: str = "bbc-news") -> float:
    """Mean cosine similarity in [-1, 1] of ``model.embed`` to the pretrained all-MiniLM-L6-v2 embeddings
    on the first 256 test examples of ``task_name``. NaN when the model has no ``embed`` method
    (e.g. a wrapped ``*ForSequenceClassification`` model) — reported, not raised, so measuring goes on.
    """
    if not callable(getattr(model, "embed", None)):
        return math.nan
    from modelpress.tasks.builtin import get

    ref = _reference_embeddings(task_name)
    got = _embed(model, get(task_name).test.head(EMBED_EXAMPLES))
    return float(F.cosine_similarity(got, ref, dim=-1).mean())
