"""Helpers shared by the measuring modules: a baked eval-mode copy, and batches of given size."""

from __future__ import annotations

from torch import Tensor, nn

from modelpress.errors import BadInputError, bad_value, is_int
from modelpress.tasks.task import Split

__all__ = ["baked_eval_copy", "baked_view", "batch_of", "check_positive_int", "first_rows"]


def baked_eval_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` with every parametrization removed (effective weights kept), in eval mode.

    Measuring the baked copy measures what the artifact ships (a mask multiply is not part of the
    deployed model) and leaves the caller's model exactly as it was.
    """
    # Imported here so that `modelpress.measure` imports without pulling in the artifact's
    # dependencies until a measurement actually needs them.
    from modelpress.artifact import bake

    if not isinstance(model, nn.Module):
        raise bad_value("model", "measure", "a torch.nn.Module", type(model).__name__)
    copy = bake(model)
    copy.eval()
    return copy


def baked_view(model: nn.Module) -> nn.Module:
    """``model`` in its stored form without a needless copy: a baked copy (`baked_eval_copy`) when it
    holds parametrizations (pruning masks), else ``model`` itself. Callers only read it (and restore any
    train / eval mode they change)."""
    from torch.nn.utils import parametrize

    if not isinstance(model, nn.Module):
        raise bad_value("model", "measure", "a torch.nn.Module", type(model).__name__)
    if any(parametrize.is_parametrized(m) for m in model.modules()):
        return baked_eval_copy(model)
    return model


def first_rows(inputs: tuple[Tensor, ...], n: int) -> tuple[Tensor, ...]:
    """The first ``n`` rows of each input tensor."""
    return tuple(t[:n] for t in inputs)


def batch_of(split: Split, batch_size: int) -> tuple[Tensor, ...]:
    """``batch_size`` examples from ``split`` (its first rows, repeated when the split is smaller).

    Returns the model's positional inputs, each of shape ``(batch_size, ...)``.
    """
    check_positive_int(batch_size, "batch_size", "measure")
    n = len(split)
    if n >= batch_size:
        return first_rows(split.inputs, batch_size)
    reps = -(-batch_size // n)  # ceil
    return tuple(t.repeat(reps, *([1] * (t.dim() - 1)))[:batch_size] for t in split.inputs)


def check_positive_int(value: object, name: str, owner: str, *, minimum: int = 1) -> int:
    """Return ``value`` if it is an int ``>= minimum``, else raise `BadInputError`."""
    if not is_int(value, minimum):
        raise bad_value(name, owner, f"an int >= {minimum}", value)
    return value


def check_inputs(inputs: object, owner: str) -> tuple[Tensor, ...]:
    """``inputs`` as a non-empty tuple of tensors that share their first (batch) dimension."""
    if isinstance(inputs, Tensor):
        inputs = (inputs,)
    if not isinstance(inputs, (tuple, list)) or not inputs or not all(isinstance(t, Tensor) for t in inputs):
        raise bad_value("inputs", owner, "a non-empty tuple of tensors", type(inputs).__name__)
    sizes = {t.shape[0] if t.dim() else None for t in inputs}
    if None in sizes or len(sizes) != 1:
        raise BadInputError(
            f"`inputs` of `{owner}` must all have the same batch (first) dimension; got shapes "
            f"{[tuple(t.shape) for t in inputs]}."
        )
    return tuple(inputs)
