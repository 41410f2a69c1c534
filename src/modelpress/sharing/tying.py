"""Cross-layer tying (ALBERT-style): same-shaped blocks replaced by fewer shared ones.

Tied blocks are one module object at several paths, so their parameters are one set of tensors: the
optimizer updates them once, `modelpress.artifact.save` stores each tensor once (the other names become
aliases in the manifest) and parameter counts count them once. A loaded artifact holds equal copies
(``load`` fills each alias from its target): the same function, but a later fine-tuning would train the
copies apart.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from modelpress.errors import BadInputError, bad_value

__all__ = ["plan_groups", "tie_blocks"]


def _signature(module: nn.Module) -> tuple:
    return (type(module).__name__, tuple((k, tuple(v.shape), v.dtype) for k, v in module.state_dict().items()))


def plan_groups(model: nn.Module, pattern: str, unique: int) -> list[list[str]]:
    """The blocks of ``model`` whose qualified names fully match ``pattern`` (outermost only), in
    module order, split into ``unique`` consecutive groups of near-equal size.

    Raises BadInputError when fewer than two blocks match, when ``unique`` is not below the number of
    blocks, or when blocks of one group differ in type or in any parameter / buffer shape.
    """
    rx = re.compile(pattern)
    names: list[str] = []
    for name, _ in model.named_modules():
        if name and rx.fullmatch(name) and not any(name.startswith(n + ".") for n in names):
            names.append(name)
    if len(names) < 2:
        raise bad_value("blocks", "Share", "a pattern matching at least two blocks", pattern,
                        f"it matched {names}; list the model's module names with model.named_modules().")
    if not 1 <= unique < len(names):
        raise bad_value("unique", "Share", f"an int in 1..{len(names) - 1} (fewer than the {len(names)} "
                        "blocks matched)", unique)
    sizes = [len(names) // unique + (1 if i < len(names) % unique else 0) for i in range(unique)]
    groups, at = [], 0
    for size in sizes:
        groups.append(names[at: at + size])
        at += size
    for group in groups:
        first = _signature(model.get_submodule(group[0]))
        for other in group[1:]:
            if _signature(model.get_submodule(other)) != first:
                raise BadInputError(
                    f"`blocks` of `Share` must name blocks of one shape to tie; got `{group[0]}` and `{other}`, "
                    "whose types or parameter shapes differ. Fix: narrow the pattern to same-shaped blocks.")
    return groups


@torch.no_grad()
def tie_blocks(model: nn.Module, pattern: str, unique: int, init: str = "mean") -> list[list[str]]:
    """Tie the blocks `plan_groups` finds (in place): each group becomes its first block, its floating
    tensors set to the group's ``mean`` (or left as the ``first`` block's). Returns the groups.
    Raises what `plan_groups` raises, before changing anything."""
    groups = plan_groups(model, pattern, unique)
    for group in groups:
        head = model.get_submodule(group[0])
        if init == "mean":
            states = [model.get_submodule(n).state_dict() for n in group]
            for key, value in head.state_dict(keep_vars=True).items():
                if value.is_floating_point():
                    value.copy_(torch.stack([s[key].float() for s in states]).mean(0).to(value.dtype))
        for other in group[1:]:
            model.set_submodule(other, head)
    return groups
