"""Metrics: planted accuracy; embedding cosine against the pretrained encoder."""

from __future__ import annotations

import math

import pytest
import torch

from modelpress.tasks import metrics
from modelpress.tasks.task import Split


def test_metric_of_stored_outputs_larger_than_one_batch():
    """Outputs computed once (quantization sensitivity, deployment candidates) are scored through the
    same metric; accuracy feeds 512 examples at a time, and 1300 rows must not be handed back at once."""
    torch.manual_seed(0)
    targets = torch.randint(0, 5, (1300,))
    split = Split((torch.zeros(1300, 3),), targets)
    predicted = torch.where(torch.rand(1300) < 0.7, targets, (targets + 1) % 5)
    outputs = torch.nn.functional.one_hot(predicted, 5).float()
    expected = int((predicted == targets).sum()) / 1300
    assert metrics.ACCURACY.on_outputs(outputs, split) == pytest.approx(expected, abs=1e-12)
    assert metrics.ACCURACY.on_outputs(outputs, split) == pytest.approx(expected, abs=1e-12)  # again
    with pytest.raises(ValueError, match="1299 output rows"):
        metrics.ACCURACY.on_outputs(outputs[:-1], split)


def test_accuracy_planted():
    targets = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 0, 1])
    split = Split((torch.zeros(10, 2),), targets)
    logits = torch.nn.functional.one_hot(torch.tensor([0, 1, 2, 3, 0, 1, 2, 0, 1, 2]), 4).float()
    calls = []

    def predict(inputs):
        n = len(inputs[0])
        start = sum(calls)
        calls.append(n)
        return logits[start : start + n]

    assert metrics.accuracy(predict, split, batch_size=3) == pytest.approx(0.7)
    assert calls == [3, 3, 3, 1]
    assert metrics.ACCURACY.name == "accuracy" and metrics.ACCURACY.higher_is_better


def test_embedding_cosine_is_nan_without_embed():
    assert math.isnan(metrics.embedding_cosine(torch.nn.Linear(2, 2)))


@pytest.mark.slow
def test_embedding_cosine_of_pretrained_is_one(monkeypatch):
    from modelpress.tasks.minilm import build_minilm

    monkeypatch.setattr(metrics, "EMBED_EXAMPLES", 8)
    metrics._reference_embeddings.cache_clear()
    try:
        assert metrics.embedding_cosine(build_minilm(num_classes=5)) == pytest.approx(1.0, abs=1e-5)
        torch.manual_seed(0)
        random = build_minilm(num_classes=5, pretrained=False)
        assert metrics.embedding_cosine(random) < 0.9
    finally:
        metrics._reference_embeddings.cache_clear()
