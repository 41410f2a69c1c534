"""The training loop: determinism, hooks, overrides, argument checks; torch_predict and evaluate."""

from __future__ import annotations

import pytest
import torch

from modelpress.errors import BadInputError
from modelpress.tasks import data, models
from modelpress.tasks.metrics import cross_entropy
from modelpress.tasks.train import evaluate, torch_predict, train


@pytest.fixture(scope="module")
def digits():
    return data.digits()


def _fresh(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return models.build("lenet-300-100", input_shape=(1, 8, 8))


def test_training_is_deterministic(digits):
    a, b = _fresh(), _fresh()
    la = train(a, digits.train, cross_entropy, epochs=2, seed=3, progress=False)
    lb = train(b, digits.train, cross_entropy, epochs=2, seed=3, progress=False)
    assert la == lb and len(la) == 2
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)
    c = _fresh()
    train(c, digits.train, cross_entropy, epochs=2, seed=4, progress=False)
    assert not torch.equal(c.fc1.weight, a.fc1.weight)  # another seed shuffles differently


def test_training_learns_and_leaves_global_rng_alone(digits):
    m = _fresh()
    state = torch.random.get_rng_state()
    losses = train(m, digits.train, cross_entropy, epochs=5, lr=2e-3, progress=False)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert losses[-1] < 0.5 * losses[0]
    acc = (torch_predict(m)(digits.test.inputs).argmax(1) == digits.test.targets).float().mean()
    assert float(acc) > 0.9


def test_on_step_and_loss_override(digits):
    calls: list[tuple[int, int]] = []
    seen: list[int] = []

    def override(model, inputs, targets):
        seen.append(len(targets))
        return cross_entropy(model(*inputs), targets) * 0.0 + model.fc3.bias.square().sum()

    m = _fresh()
    train(
        m,
        digits.train,
        cross_entropy,
        epochs=2,
        batch_size=500,
        progress=False,
        on_step=lambda s, t: calls.append((s, t)),
        loss_fn_override=override,
    )
    assert calls == [(1, 6), (2, 6), (3, 6), (4, 6), (5, 6), (6, 6)]  # 1257 examples → 3 batches per epoch
    assert seen == [500, 500, 257] * 2
    # The override only pulls fc3.bias to 0: the other weights never get a gradient.
    before = _fresh()
    assert torch.equal(m.fc1.weight, before.fc1.weight)


def test_sgd_cosine_and_frozen_parameters(digits):
    m = _fresh()
    m.fc1.requires_grad_(False)
    w = m.fc1.weight.clone()
    train(
        m, digits.train, cross_entropy, epochs=1, optimizer="sgd", lr=0.05, schedule="cosine", progress=False
    )
    assert torch.equal(m.fc1.weight, w)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"epochs": -1},
        {"lr": 0.0},
        {"batch_size": 0},
        {"optimizer": "lbfgs"},
        {"weight_decay": -1.0},
        {"schedule": "step"},
    ],
)
def test_bad_arguments(digits, kwargs):
    with pytest.raises(BadInputError):
        train(_fresh(), digits.train, cross_entropy, progress=False, **kwargs)


def test_torch_predict_batches_match_and_restore_nothing(digits):
    m = models.build("resnet-s", input_shape=(1, 8, 8))
    m.train()
    x = digits.test.inputs
    full = torch_predict(m, batch_size=1000)(x)
    small = torch_predict(m, batch_size=7)(x)
    assert not m.training  # eval mode: batch norm uses running statistics, batches are independent
    assert full.shape == (540, 10) and torch.allclose(full, small, atol=1e-5)


def test_evaluate_uses_the_test_split():
    from modelpress.tasks import get

    task = get("digits")

    class Oracle(torch.nn.Module):
        """Right on every test image, by looking it up."""

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))
            self.keys = {
                x.numpy().tobytes(): int(y)
                for x, y in zip(task.test.inputs[0], task.test.targets, strict=True)
            }

        def forward(self, x):
            out = torch.zeros(len(x), 10)
            for i, img in enumerate(x):
                out[i, self.keys.get(img.numpy().tobytes(), 0)] = 1
            return out

    assert evaluate(Oracle(), task) == 1.0
