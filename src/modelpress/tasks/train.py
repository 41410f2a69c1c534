"""The training loop used for baselines, fine-tuning and distillation, and the torch predict/evaluate.

``train`` is deterministic: the global torch RNG is forked and seeded with ``seed`` (dropout, init done
inside the loop) and mini-batches are shuffled by their own seeded generator, so two runs with the same
seed on the same machine give identical weights. The caller's global RNG state is left untouched.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from modelpress.errors import bad_value, is_int, is_number
from modelpress.tasks.task import Predict, Split, Task

__all__ = ["OPTIMIZERS", "SCHEDULES", "check_training_config", "evaluate", "torch_predict", "train", "training_task"]

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine")


def check_training_config(owner: str, epochs: object, lr: object, batch_size: object, optimizer: object,
                          weight_decay: object, schedule: object) -> None:
    """Validate the training fields of a step config named ``owner`` (`FineTune`, `Distill`): epochs an int
    ≥ 1, lr in (0, 10), batch_size an int ≥ 1 or None (the task's default), optimizer in `OPTIMIZERS`,
    weight_decay ≥ 0, schedule in `SCHEDULES`. Raises `BadInputError` naming the field and ``owner``."""
    if not is_int(epochs, 1):
        raise bad_value("epochs", owner, "an int ≥ 1", epochs)
    if not is_number(lr) or not 0 < lr < 10:
        raise bad_value("lr", owner, "a float in (0, 10)", lr, "a typical value is 1e-3.")
    if batch_size is not None and not is_int(batch_size, 1):
        raise bad_value("batch_size", owner, "an int ≥ 1 or null", batch_size)
    if optimizer not in OPTIMIZERS:
        raise bad_value("optimizer", owner, f"one of {list(OPTIMIZERS)}", optimizer)
    if not is_number(weight_decay) or weight_decay < 0:
        raise bad_value("weight_decay", owner, "a float ≥ 0", weight_decay)
    if schedule not in SCHEDULES:
        raise bad_value("schedule", owner, f"one of {list(SCHEDULES)}", schedule)


def training_task(task: Task, augment: bool) -> tuple[Task, str | None]:
    """The task a training step learns from, and what its log should say about augmentation.

    ``augment`` false: ``(task, None)``. True: ``(task.augmented(), note)`` — the task's training split
    replaced by its augmentation (``Task.augment``), the note naming the split and its size; a task without
    one trains on its split as it is, and the note says so (a recipe that asks for augmentation stays usable
    on every task, and the log shows where it had no effect).
    """
    if not augment:
        return task, None
    if task.augment is None:
        return task, f"none: task {task.name} defines no augmentation; trained on its {len(task.train):,} examples as they are"
    aug = task.augmented()
    return aug, f"{aug.train.name}: {len(aug.train):,} examples ({len(task.train):,} before augmentation)"


def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _check(
    epochs: int, lr: float, batch_size: int, optimizer: str, weight_decay: float, schedule: str
) -> None:
    if not is_int(epochs, 0):
        raise bad_value("epochs", "train", "an int >= 0", epochs)
    if not is_int(batch_size, 1):
        raise bad_value("batch_size", "train", "an int >= 1", batch_size)
    if not lr > 0:
        raise bad_value("lr", "train", "a float > 0", lr)
    if not weight_decay >= 0:
        raise bad_value("weight_decay", "train", "a float >= 0", weight_decay)
    if optimizer not in OPTIMIZERS:
        raise bad_value("optimizer", "train", f"one of {list(OPTIMIZERS)}", optimizer)
    if schedule not in SCHEDULES:
        raise bad_value("schedule", "train", f"one of {list(SCHEDULES)}", schedule)


def _optimizer(
    params: list[nn.Parameter], name: str, lr: float, weight_decay: float
) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


def train(
    model: nn.Module,
    split: Split,
    loss: Callable[[Tensor, Tensor], Tensor],
    *,
    epochs: int = 1,
    lr: float = 1e-3,
    batch_size: int = 64,
    optimizer: str = "adam",
    weight_decay: float = 0.0,
    seed: int = 0,
    progress: bool = True,
    on_step: Callable[[int, int], None] | None = None,
    loss_fn_override: Callable[[nn.Module, tuple[Tensor, ...], Tensor], Tensor] | None = None,
    schedule: str = "constant",
) -> list[float]:
    """Train ``model`` in place on ``split``; return the mean training loss of each epoch.

    - ``loss(model(*inputs), targets) -> scalar`` unless ``loss_fn_override(model, inputs, targets)``
      is given, which then computes the whole loss (distillation uses it).
    - ``optimizer``: "adam", "adamw" or "sgd" (momentum 0.9); ``weight_decay`` is L2 (decoupled for adamw).
    - ``schedule``: "constant" or "cosine" (learning rate decays to 0 over all steps).
    - ``on_step(step, total_steps)`` runs after every optimizer step (step counts from 1); pruning
      schedules and mask updates hook in here.
    - Only parameters with ``requires_grad`` are optimized (freeze an encoder to train a head).

    Batches are moved to the device of the model's first parameter. The model is left in the train/eval
    mode it had before. Raises BadInputError for a bad argument.
    """
    from tqdm.auto import tqdm

    _check(epochs, lr, batch_size, optimizer, weight_decay, schedule)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise bad_value("model", "train", "a module with trainable parameters", type(model).__name__)
    device = _device(model)
    steps_per_epoch = -(-len(split) // batch_size)
    total = steps_per_epoch * epochs
    was_training = model.training
    losses: list[float] = []
    # fork_rng: seed dropout etc. without changing the caller's global RNG stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        opt = _optimizer(params, optimizer, lr, weight_decay)
        sched = (
            torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(total, 1)) if schedule == "cosine" else None
        )
        model.train()
        step = 0
        bar = tqdm(total=total, disable=None if progress else True, desc="train", unit="step", leave=False)  # None: off when not a terminal
        try:
            for _ in range(epochs):
                running, seen = 0.0, 0
                for inputs, targets in split.batches(batch_size, shuffle=True, generator=gen):
                    inputs = tuple(t.to(device) for t in inputs)
                    targets = targets.to(device)
                    if loss_fn_override is not None:
                        value = loss_fn_override(model, inputs, targets)
                    else:
                        value = loss(model(*inputs), targets)
                    opt.zero_grad(set_to_none=True)
                    value.backward()
                    opt.step()
                    if sched is not None:
                        sched.step()
                    step += 1
                    running += float(value.detach()) * len(targets)
                    seen += len(targets)
                    bar.update(1)
                    bar.set_postfix(loss=f"{running / seen:.4f}", refresh=False)
                    if on_step is not None:
                        on_step(step, total)
                losses.append(running / max(seen, 1))
        finally:
            bar.close()
            model.train(was_training)
    return losses


def torch_predict(model: nn.Module, batch_size: int = 256) -> Predict:
    """A predict function ``predict(inputs) -> outputs`` running ``model`` in eval mode without gradients,
    ``batch_size`` examples at a time; outputs are concatenated on the CPU."""
    if not is_int(batch_size, 1):
        raise bad_value("batch_size", "torch_predict", "an int >= 1", batch_size)

    def predict(inputs: tuple[Tensor, ...]) -> Tensor:
        model.eval()
        device = _device(model)
        n = len(inputs[0])
        outs = []
        with torch.no_grad():
            for s in range(0, n, batch_size):
                outs.append(model(*(t[s : s + batch_size].to(device) for t in inputs)).cpu())
        return torch.cat(outs)

    return predict


def evaluate(model: nn.Module, task: Task) -> float:
    """The task's metric of ``model`` (torch, eval mode) on the task's held-out test split."""
    return task.metric(torch_predict(model), task.test)
