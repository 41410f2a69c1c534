"""Which modules a step touches.

A selector is a callable ``(name, module) -> bool`` over ``model.named_modules()``. Selectors combine
with ``&``, ``|`` and ``~``. Steps take ``select=`` (default: every module the step can handle).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from torch import nn

from modelpress.errors import BadInputError

__all__ = ["Selector", "all_modules", "by_name", "by_type", "exclude", "from_spec", "modules"]


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
