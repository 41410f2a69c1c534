"""`Recipe`: an ordered list of compression steps, from Python or YAML, validated all at once.

YAML shape — a list of one-key mappings; the key names the step, its mapping holds the config fields
and an optional ``select`` (see :func:`modelpress.select.from_spec`)::

    - prune: {structure: weight, sparsity: 0.92, scope: global, select: {types: [linear]}}
    - finetune: {epochs: 3, lr: 1e-3}
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from modelpress.errors import BadInputError
from modelpress.pipeline.steps import STEPS, StepConfig, kind_of
from modelpress.select import Selector, from_spec

__all__ = ["Recipe", "RecipeStep", "builtin_recipes"]


@dataclass(frozen=True)
class RecipeStep:
    """One step: its config and the modules it touches (None = all it supports)."""

    config: StepConfig
    select: dict[str, Any] | None = None

    @property
    def key(self) -> str:
        return kind_of(self.config).key

    @property
    def selector(self) -> Selector | None:
        return from_spec(self.select)

    def to_dict(self) -> dict[str, Any]:
        body = dataclasses.asdict(self.config)
        if self.select is not None:
            body["select"] = self.select
        return {self.key: body}


@dataclass(frozen=True)
class Recipe:
    """An ordered, validated list of steps."""

    steps: tuple[RecipeStep, ...]
    name: str = "recipe"

    @classmethod
    def from_list(cls, items: list[Any], name: str = "recipe", lines: list[int] | None = None) -> Recipe:
        """Build from configs (``FineTune(...)``), ``RecipeStep``s or one-key dicts; every error at once."""
        if not isinstance(items, list) or not items:
            raise BadInputError(
                f"recipe `{name}` must be a non-empty list of steps; got {items!r}. "
                "Fix: write e.g. `- finetune: {epochs: 1}`."
            )
        steps, errors = [], []
        for i, item in enumerate(items):
            where = f"step {i + 1}" + (f" (line {lines[i]})" if lines else "")
            try:
                steps.append(_parse_step(item))
            except (BadInputError, TypeError) as e:
                errors.append(f"{where}: {e}")
        if errors:
            raise BadInputError(f"recipe `{name}` has {len(errors)} error(s):\n  " + "\n  ".join(errors))
        return cls(tuple(steps), name)

    @classmethod
    def from_yaml(cls, source: str | Path) -> Recipe:
        """Load a YAML file (path) or YAML text; errors name the YAML line of each bad step."""
        is_text = isinstance(source, str) and ("\n" in source or source.lstrip()[:1] in ("-", "["))
        if is_text:
            text, name = source, "recipe"
        else:
            path = Path(source)
            if not path.is_file():
                raise BadInputError(f"recipe file `{path}` does not exist. Fix: check the path.")
            try:
                text, name = path.read_text(encoding="utf-8"), path.stem
            except (OSError, UnicodeDecodeError) as e:
                raise BadInputError(f"recipe file `{path}` cannot be read as UTF-8 text ({e}).") from e
        try:
            node = yaml.compose(text, Loader=_Loader)
            items = yaml.load(text, Loader=_Loader)
        except _DuplicateKey as e:
            raise BadInputError(f"recipe `{name}`: {e}") from None
        except yaml.YAMLError as e:
            raise BadInputError(f"recipe `{name}` is not valid YAML: {e}") from e
        lines = [n.start_mark.line + 1 for n in node.value] if isinstance(node, yaml.SequenceNode) else None
        return cls.from_list(items, name=name, lines=lines)

    @classmethod
    def resolve(cls, spec: str | Path) -> Recipe:
        """A built-in recipe name (``modelpress recipes``) or a YAML file path."""
        builtin = builtin_recipes()
        if str(spec) in builtin:
            return cls.from_yaml(builtin[str(spec)])
        if Path(spec).is_file():
            return cls.from_yaml(spec)
        close = difflib.get_close_matches(str(spec), list(builtin), n=3)
        hint = f" Did you mean {close}?" if close else ""
        raise BadInputError(
            f"`recipe` must be a built-in recipe name {sorted(builtin)} or a YAML file; got {str(spec)!r}.{hint}"
        )

    def to_list(self) -> list[dict[str, Any]]:
        return [s.to_dict() for s in self.steps]

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_list(), sort_keys=False)


class _DuplicateKey(yaml.YAMLError):
    """A mapping names one key twice (the message has both line numbers)."""


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads ``1e-3`` (no dot) as a string; users write learning rates that way, so read it as a float.

    A key given twice in one mapping is an error (PyYAML keeps the last one silently, so
    ``{sparsity: 0.5, sparsity: 0.9}`` would run at 0.9 without a word).
    """

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            first: dict[Any, int] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                if isinstance(key, (str, int, float, bool)) and key in first:
                    raise _DuplicateKey(f"the key `{key}` is given twice (lines {first[key]} and {line}). "
                                        "Fix: keep one of them.")
                if isinstance(key, (str, int, float, bool)):
                    first[key] = line
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)?(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def _parse_step(item: Any) -> RecipeStep:
    if isinstance(item, RecipeStep):
        return item
    if not isinstance(item, dict):
        kind_of(item)  # raises the clear error if it is not a step config
        return RecipeStep(item)
    if len(item) != 1:
        raise BadInputError(f"a step must be a mapping with exactly one key (the step name); got keys {list(item)}.")
    key, body = next(iter(item.items()))
    if key not in STEPS:
        close = difflib.get_close_matches(str(key), list(STEPS), n=1)
        hint = f" Did you mean `{close[0]}`?" if close else ""
        raise BadInputError(f"unknown step `{key}`; known steps are {sorted(STEPS)}.{hint}")
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise BadInputError(f"step `{key}` must map to a mapping of settings, e.g. `{key}: {{...}}`; got {body!r}.")
    body = dict(body)
    select = body.pop("select", None)
    kind = STEPS[key]
    fields = {f.name for f in dataclasses.fields(kind.config)}
    unknown = sorted(set(body) - fields)
    if unknown:
        raise BadInputError(f"step `{key}` has unknown setting(s) {unknown}; allowed: {sorted(fields)}.")
    config = kind.config(**{k: tuple(v) if isinstance(v, list) else v for k, v in body.items()})
    from_spec(select)  # validate now, build later
    return RecipeStep(config, select)


def builtin_recipes() -> dict[str, Path]:
    """Built-in recipe names → their YAML files (``src/modelpress/recipes/*.yaml``)."""
    folder = resources.files("modelpress") / "recipes"
    return {Path(str(p)).stem: Path(str(p)) for p in folder.iterdir() if str(p).endswith(".yaml")}
