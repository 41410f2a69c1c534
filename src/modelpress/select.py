"""Which modules a step touches.

A selector is a callable ``(name, module) -> bool`` over ``model.named_modules()``. Selectors combine
with ``&``, ``|`` and ``~``. Steps take ``select=`` (default: every module the step can handle).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from torch import nn
from torch.nn.utils import parametrize

from modelpress.context import Skipped
from modelpress.errors import BadInputError

__all__ = ["NEUTRAL_TYPES", "Selector", "Target", "all_modules", "by_name", "by_type", "exclude", "from_spec",
           "modules", "targets", "tied_weights"]


@dataclass(frozen=True)
class Selector:
    """A named predicate over ``(qualified_name, module)``."""

    predicate: Callable[[str, nn.Module], bool]
    description: str

    def __call__(self, name: str, module: nn.Module) -> bool:
        return bool(self.predicate(name, module))

    def __and__(self, other: Selector) -> Selector:
        return Selector(lambda n, m: self(n, m) and other(n, m), f"({self.description} and {other.description})")

    def __or__(self, other: Selector) -> Selector:
        return Selector(lambda n, m: self(n, m) or other(n, m), f"({self.description} or {other.description})")

    def __invert__(self) -> Selector:
        return Selector(lambda n, m: not self(n, m), f"not {self.description}")

    def __repr__(self) -> str:
        return f"Selector({self.description})"


def all_modules() -> Selector:
    """Every module."""
    return Selector(lambda n, m: True, "all")


def by_type(*types: type[nn.Module]) -> Selector:
    """Modules that are instances of any of ``types`` (e.g. ``by_type(nn.Linear, nn.Conv2d)``)."""
    if not types or not all(isinstance(t, type) and issubclass(t, nn.Module) for t in types):
        raise BadInputError(f"`types` of `by_type` must be nn.Module subclasses; got {types!r}.")
    names = ",".join(t.__name__ for t in types)
    return Selector(lambda n, m: isinstance(m, types), f"type in [{names}]")


def by_name(pattern: str) -> Selector:
    """Modules whose qualified name matches the regular expression ``pattern`` (``re.fullmatch``)."""
    try:
        rx = re.compile(pattern)
    except re.error as e:
        raise BadInputError(f"`pattern` of `by_name` must be a regular expression; got {pattern!r} ({e}).") from e
    return Selector(lambda n, m: rx.fullmatch(n) is not None, f"name ~ {pattern!r}")


def exclude(pattern: str) -> Selector:
    """Modules whose qualified name does *not* match ``pattern``."""
    return ~by_name(pattern)


def modules(model: nn.Module, select: Selector | None) -> Iterator[tuple[str, nn.Module]]:
    """Yield ``(name, module)`` of ``model`` that ``select`` accepts (all when ``select`` is None)."""
    for name, module in model.named_modules():
        if select is None or select(name, module):
            yield name, module


# Layers with weights that no compression step is expected to change (normalization); `targets` does not
# list them as skipped, since nobody asked for them.
NEUTRAL_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.modules.normalization.RMSNorm,
)


@dataclass(frozen=True)
class Target:
    """A module a step may change: its qualified ``name``, the ``module``, the accepted ``base`` type it is
    an instance of, and whether its class overrides ``forward`` (``custom_forward``; e.g. a Conv2d
    subclass that pads in forward). A step handles a custom forward by keeping it (changing the weight
    in place, or wrapping the call) or skips the target with that reason."""

    name: str
    module: nn.Module
    base: type[nn.Module]
    custom_forward: bool


def _base_of(module: nn.Module, accepts: tuple[type[nn.Module], ...]) -> type[nn.Module] | None:
    cls = parametrize.type_before_parametrizations(module)
    for base in accepts:
        if issubclass(cls, base):
            return base
    return None


def _owns_weights(module: nn.Module) -> bool:
    return any(True for _ in module.parameters(recurse=False))


def _neutral(module: nn.Module) -> bool:
    # Normalization layers of other libraries (LlamaRMSNorm, T5LayerNorm, ...) are not torch subclasses;
    # their class names say what they are.
    return isinstance(module, NEUTRAL_TYPES) or type(module).__name__.endswith("Norm")


# Methods whose override changes what a layer computes (`_conv_forward` is what Conv's forward calls).
_FORWARD_METHODS = ("forward", "_conv_forward")


def _overrides_forward(cls: type[nn.Module], base: type[nn.Module]) -> bool:
    return any(getattr(cls, m, None) is not getattr(base, m, None) for m in _FORWARD_METHODS)


def targets(model: nn.Module, select: Selector | None, accepts: tuple[type[nn.Module], ...], *,
            step: str = "this step", replaced_by: str | None = None) -> tuple[list[Target], list[Skipped]]:
    """The one rule for which modules a step may touch.

    Walks ``model.named_modules()`` in order; a module the selector rejects is ignored. A module that is
    an instance of one of ``accepts`` (by ``isinstance``, so subclasses count; pruning parametrizations
    are looked through) is a `Target`, and nothing under it is visited. Every other selected module that
    owns weights itself and is not a normalization layer (`NEUTRAL_TYPES`, or a class whose name ends
    in "Norm", such as transformers' ``LlamaRMSNorm``) is returned as `Skipped`
    with the reason (and the module's own ``later_steps`` note when it has one: a swapped layer saying
    what it is and how to get what the step would do), so no layer is passed over in silence. ``step``
    names the step in those reasons.
    ``replaced_by``: for a step that replaces a layer by a new form (not one that keeps the layer's own
    forward), the name of that form; a target overriding ``forward`` is then skipped with the reason.
    """
    found: list[Target] = []
    skipped: list[Skipped] = []
    taken: list[str] = []
    handled = ", ".join(t.__name__ for t in accepts)
    for name, module in model.named_modules():
        if any(name.startswith(t + ".") or t == "" for t in taken):
            continue
        if getattr(module, "sealed", False) is True:
            # a swap whose children are part of its encoding (e.g. a layer run with its codes): a later
            # step changes the swap as a whole or not at all
            taken.append(name)
        if select is not None and not select(name, module):
            continue
        base = _base_of(module, accepts)
        if base is not None:
            cls = parametrize.type_before_parametrizations(module)
            custom = _overrides_forward(cls, base)
            taken.append(name)
            if custom and replaced_by is not None:
                skipped.append(Skipped(name, f"{type(module).__name__} overrides forward; {replaced_by} would "
                                             "drop its own computation"))
                continue
            found.append(Target(name, module, base, custom))
        elif _owns_weights(module) and not _neutral(module):
            # a swapped layer may say what it is and how to get what the step would have done
            note = getattr(module, "later_steps", None)
            why = f"{type(module).__name__} has weights but {step} handles only {handled}"
            skipped.append(Skipped(name or "(root)", why + (f"; {note}" if isinstance(note, str) else "")))
    return found, skipped


def _weight_tensor(module: nn.Module) -> object | None:
    if parametrize.is_parametrized(module, "weight"):
        return module.parametrizations["weight"].original
    w = module._parameters.get("weight")
    return w if isinstance(w, nn.Parameter) else None


def tied_weights(model: nn.Module) -> dict[str, list[str]]:
    """Modules whose ``weight`` is one tensor shared with other modules (a language model's output layer
    tied to its input embedding): ``{name: [the other modules' names]}``, only for shared weights.
    Looks through pruning parametrizations (their ``original`` is the shared tensor)."""
    owners: dict[int, list[str]] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        w = _weight_tensor(module)
        if w is not None and name not in owners.setdefault(id(w), []):
            owners[id(w)].append(name)
    return {n: [o for o in names if o != n] for names in owners.values() if len(names) > 1 for n in names}


_TYPE_NAMES = {"linear": nn.Linear, "conv2d": nn.Conv2d, "conv1d": nn.Conv1d, "embedding": nn.Embedding}


def from_spec(spec: dict | None) -> Selector | None:
    """Build a selector from a recipe's ``select:`` mapping.

    Keys (all optional, combined with *and*): ``types`` (list of ``linear``, ``conv2d``, ``conv1d``,
    ``embedding``), ``include`` (regex on names), ``exclude`` (regex on names).
    """
    if spec is None:
        return None
    if not isinstance(spec, dict) or set(spec) - {"types", "include", "exclude"}:
        raise BadInputError(
            f"`select` must be a mapping with keys types / include / exclude; got {spec!r}."
        )
    sel = all_modules()
    if "types" in spec:
        bad = [t for t in spec["types"] if t not in _TYPE_NAMES]
        if bad:
            raise BadInputError(f"`select.types` must be among {sorted(_TYPE_NAMES)}; got {bad!r}.")
        sel = sel & by_type(*(_TYPE_NAMES[t] for t in spec["types"]))
    if "include" in spec:
        sel = sel & by_name(spec["include"])
    if "exclude" in spec:
        sel = sel & exclude(spec["exclude"])
    return sel
