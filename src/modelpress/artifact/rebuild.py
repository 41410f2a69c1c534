"""Rebuilding a model's structure without pickle: its source, changed shapes, and module swaps.

Saving compares the compressed model with a fresh build of its source (on the meta device, so nothing
is allocated) and records what differs: the shapes of tensors that structured pruning shrank, the int
attributes that describe them (``out_features``, ``num_attention_heads``, ...), and every
:class:`~modelpress.artifact.packed.PackedModule` swap. Loading replays those records on a fresh build.
"""

from __future__ import annotations

import inspect
import sys
from typing import Any

import torch
from torch import nn

from modelpress.artifact.packed import PackedModule
from modelpress.errors import BadInputError
from modelpress.source import import_ref

__all__ = ["apply_shapes", "build_from_source", "import_packed_class", "record_structure", "under"]

# Swapped classes are imported only from inside these packages (tests widen it with monkeypatch).
ALLOWED_PACKED_PREFIXES: tuple[str, ...] = ("modelpress.",)
# Even a trusted `module:function` source must not point into these: no model factory lives there, and
# calling e.g. `os:system` with manifest-supplied kwargs would run a command.
_REFUSED_TOP = frozenset(sys.stdlib_module_names) | {"builtins", "torch", "numpy", "pip", "setuptools"}
_KINDS = ("builtin", "hf", "module", "callable")
_PLAIN = (bool, int, float, str, type(None))


def under(name: str, prefixes: set[str]) -> bool:
    """Whether module/tensor ``name`` is one of ``prefixes`` or lies below one."""
    return any(p == "" or name == p or name.startswith(p + ".") for p in prefixes)


def _callable(ref: str, kwargs: dict[str, Any], trust_source: bool) -> nn.Module:
    if not trust_source:
        # Refused before anything is imported: importing a module runs its code too.
        raise BadInputError(
            f"the artifact's model source is the function {ref!r}; building the model would run that code, "
            "and modelpress runs code named by an artifact only when told to. Fix: if you trust this "
            "artifact, pass trust_source=True to modelpress.load (--trust-source on the command line).")
    top = ref.partition(":")[0].split(".")[0]
    if top in _REFUSED_TOP:
        raise BadInputError(f"source ref {ref!r} points into {top!r}, which is not a model factory; refusing "
                            "to call it. Fix: point at your own package's function.")
    fn = import_ref(ref, "model factory")
    if not inspect.isfunction(fn):
        raise BadInputError(f"source ref {ref!r} is a {type(fn).__name__}, not a Python function.")
    model = fn(**kwargs)
    if not isinstance(model, nn.Module):
        raise BadInputError(f"model factory {ref!r} returned {type(model).__name__}, not an nn.Module.")
    return model


def _module_class(ref: str, kwargs: dict[str, Any]) -> nn.Module:
    """A ``torch.nn`` or modelpress module class built with JSON keyword arguments."""
    mod_name, _, cls_name = ref.partition(":")
    if not cls_name or not (mod_name == "torch.nn" or mod_name.startswith("modelpress.")):
        raise BadInputError(f"module source class {ref!r} must be a torch.nn class ('torch.nn:Linear') or a "
                            "modelpress module class ('modelpress.pkg.module:Class'); refusing to import it.")
    cls = import_ref(ref, "module class")
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise BadInputError(f"module source {ref!r} is a {type(cls).__name__}, not an nn.Module class.")
    return cls(**kwargs)


def build_from_source(source: dict[str, Any], *, meta: bool = False, trust_source: bool = False) -> nn.Module:
    """A freshly built model (random weights) from a `modelpress.source` dict.

    The source is data: it can build a built-in model, a Hugging Face model from its config (no remote
    code) or a ``torch.nn`` / modelpress module class with JSON keyword arguments. A ``callable`` source
    (a user's ``module:function``) runs user code, so it is built only with ``trust_source=True``.
    ``meta=True`` builds on the meta device (no memory, for comparing structure); builders that cannot
    run there fall back to the CPU. Raises BadInputError for an unknown, unusable or untrusted source.
    """
    kind = source.get("kind") if isinstance(source, dict) else None
    if kind not in _KINDS:
        raise BadInputError(f"unknown model source {source!r}; expected kind one of {list(_KINDS)}.")
    kwargs = source.get("kwargs") or {}
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise BadInputError(f"source kwargs must be a JSON object; got {kwargs!r}.")

    def build() -> nn.Module:
        if kind in ("builtin", "hf"):
            from modelpress.tasks import models  # what each built-in model needs to rebuild lives there

            return models.rebuild(source)
        if kind == "module":
            return _module_class(str(source.get("class")), kwargs)
        return _callable(str(source.get("ref")), kwargs, trust_source)

    if kind == "callable" and not trust_source:
        return build()  # refuses, before any device context
    if meta:
        try:
            with torch.device("meta"):
                return build()
        except BadInputError:
            raise
        except Exception:  # noqa: BLE001 - some builders read files or run ops; the CPU always works
            return build()
    return build()


# ---- recording what changed -----------------------------------------------------------------------------

def _tensors_of(m: nn.Module) -> dict[str, tuple[str, torch.Tensor | None]]:
    out: dict[str, tuple[str, torch.Tensor | None]] = {k: ("param", v) for k, v in m._parameters.items()}
    out.update({k: ("buffer", v) for k, v in m._buffers.items()})
    return out


def _is_plain(v: object) -> bool:
    if isinstance(v, _PLAIN):
        return True
    return isinstance(v, (tuple, list)) and all(_is_plain(x) for x in v)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def record_structure(baked: nn.Module, fresh: nn.Module, swapped: set[str]) -> dict[str, Any]:
    """Per module path, the tensors and plain attributes of ``baked`` that differ from ``fresh``.

    Returns ``{path: {"tensors": {name: {"kind", "shape" (None = removed), "dtype"}}, "attrs": {..}}}``.
    Modules under ``swapped`` paths are skipped (they rebuild themselves). Raises BadInputError when a
    module is missing from, added to, or of another type than the fresh build without being a
    PackedModule — such a model could not be rebuilt.
    """
    fresh_mods = dict(fresh.named_modules())
    # every path, also those of a module reached twice (cross-layer tying makes one block the child of
    # two paths; the deduplicated walk would report the second path as removed)
    baked_mods = dict(baked.named_modules(remove_duplicate=False))
    changes: dict[str, Any] = {}
    for path, m in baked_mods.items():
        if under(path, swapped):
            continue
        f = fresh_mods.get(path)
        if f is None or type(f) is not type(m):
            what = "is not in" if f is None else f"replaces a {type(f).__name__} of"
            raise BadInputError(
                f"module `{path}` ({type(m).__name__}) {what} the architecture built from the model's source, "
                "and it is not a modelpress PackedModule, so the artifact could not rebuild it. "
                "Fix: make the compressed module subclass modelpress.artifact.packed.PackedModule.")
        tensors: dict[str, Any] = {}
        bt, ft = _tensors_of(m), _tensors_of(f)
        for name, (kind, t) in bt.items():
            ref = ft.get(name, (kind, None))[1]
            same = (t is None and ref is None) or (
                t is not None and ref is not None and t.shape == ref.shape and t.dtype == ref.dtype)
            if not same or name not in ft or ft[name][0] != kind:
                tensors[name] = {"kind": kind, "shape": None if t is None else list(t.shape),
                                 "dtype": None if t is None else _dtype_name(t.dtype)}
        for name, (kind, _) in ft.items():
            if name not in bt:
                tensors[name] = {"kind": kind, "shape": None, "dtype": None}
        fv = vars(f)
        attrs = {k: v for k, v in vars(m).items()
                 if not k.startswith("_") and k != "training" and _is_plain(v) and k in fv
                 and _is_plain(fv[k]) and fv[k] != v}
        if tensors or attrs:
            changes[path] = {"tensors": tensors, "attrs": attrs}
    for path in fresh_mods:
        if path not in baked_mods and not under(path, swapped):
            raise BadInputError(f"module `{path}` of the architecture was removed from the model; the artifact "
                                "cannot rebuild a model with deleted modules. Fix: replace it with "
                                "nn.Identity() instead of deleting it.")
    return changes


# ---- replaying it ---------------------------------------------------------------------------------------

def _dtype(name: object) -> torch.dtype:
    d = getattr(torch, str(name), None)
    if not isinstance(d, torch.dtype):
        raise BadInputError(f"manifest names an unknown dtype {name!r}.")
    return d


def apply_shapes(model: nn.Module, changes: dict[str, Any]) -> None:
    """Give ``model``'s modules the recorded tensor shapes (empty tensors) and attributes, in place."""
    for path, change in changes.items():
        try:
            m = model.get_submodule(path)
        except AttributeError:
            raise BadInputError(f"manifest changes module `{path}`, which the rebuilt model lacks.") from None
        for name, spec in change.get("tensors", {}).items():
            t = None if spec["shape"] is None else torch.empty([int(s) for s in spec["shape"]],
                                                              dtype=_dtype(spec["dtype"]))
            if spec["kind"] == "param":
                m._buffers.pop(name, None)
                m.register_parameter(name, None if t is None else nn.Parameter(
                    t, requires_grad=t.is_floating_point() or t.is_complex()))
            else:
                m._parameters.pop(name, None)
                if name in m._buffers:
                    m._buffers[name] = t
                else:
                    m.register_buffer(name, t)
        for key, value in change.get("attrs", {}).items():
            current = vars(m).get(key, ...)
            # Only plain attributes that the fresh module already has: a tampered manifest must not be
            # able to replace methods or submodules.
            if key.startswith("_") or current is ... or not _is_plain(current) or not _is_plain(value):
                raise BadInputError(f"manifest sets attribute `{key}` of `{path}`, which is not a plain "
                                    "attribute of the rebuilt module.")
            if isinstance(current, tuple) and isinstance(value, list):
                value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
            setattr(m, key, value)


def import_packed_class(ref: str) -> type[PackedModule]:
    """Import a PackedModule subclass named ``"modelpress.pkg.module:Class"``.

    Only classes inside the modelpress package and only PackedModule subclasses are accepted, so a
    manifest cannot make ``load`` import or run arbitrary code. Raises BadInputError otherwise.
    """
    mod_name, _, cls_name = str(ref).partition(":")
    if not cls_name or not any(mod_name.startswith(p) for p in ALLOWED_PACKED_PREFIXES):
        raise BadInputError(f"module swap class {ref!r} is outside the modelpress package; refusing to import "
                            "it. Fix: compressed modules must live in modelpress (see artifact/packed.py).")
    cls = import_ref(ref, "module swap class (the artifact may come from another modelpress version)")
    if not (isinstance(cls, type) and issubclass(cls, PackedModule) and cls is not PackedModule):
        raise BadInputError(f"{ref!r} is not a PackedModule subclass; refusing to use it for a module swap.")
    return cls
