"""The FineTune step: validated config, real learning on digits, a clear error without data."""

import pytest
import torch

import modelpress as mp
from modelpress.errors import BadInputError
from modelpress.finetune import FineTune
from modelpress.tasks.train import evaluate


@pytest.mark.parametrize(
    "kwargs, field",
    [({"epochs": 0}, "epochs"), ({"epochs": 1.5}, "epochs"), ({"lr": 0}, "lr"), ({"optimizer": "rmsprop"}, "optimizer"),
     ({"batch_size": 0}, "batch_size"), ({"weight_decay": -1}, "weight_decay"), ({"schedule": "step"}, "schedule")],
)
def test_bad_config_names_the_field(kwargs, field):
    with pytest.raises(BadInputError, match=f"`{field}` of `FineTune`"):
        FineTune(**kwargs)


def test_finetune_trains_an_untrained_model():
    task = mp.tasks.get("digits")
    torch.manual_seed(0)
    model = mp.tasks.models.build("lenet-300-100", input_shape=(1, 8, 8), num_classes=10)
    before = evaluate(model, task)
    log = mp.compress_(model, FineTune(epochs=6, lr=2e-3, schedule="cosine"), task=task, progress=False)
    after = evaluate(model, task)
    assert before < 0.3 and after > 0.9  # chance is 0.1; 6 epochs of an MLP on digits reach > 0.9
    losses = log.details["epoch_losses"]
    assert len(losses) == 6 and losses[-1] < losses[0]


def test_finetune_without_task_is_a_clear_error():
    model = mp.tasks.models.build("lenet-300-100", input_shape=(1, 8, 8), num_classes=10)
    with pytest.raises(BadInputError, match="needs data"):
        mp.compress_(model, FineTune())
