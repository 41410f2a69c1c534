"""The swap-protocol contract, run over every concrete `PackedModule` subclass in the package.

A class joins by existing: every modelpress module is imported and ``PackedModule.__subclasses__()`` is
walked recursively; a concrete class (name not starting with ``_``) must define ``example()`` — a small
instance and inputs for it. Each class must: pack → unpack bit-exactly; have an ``export_module()`` form
(what ONNX export, params and MACs see) and a ``to_dense()`` inverse that compute what ``forward`` does;
export to ONNX and run there; and round-trip through save / load under another swap and with every other
class nested inside it (and under it), after a ``Quantize`` of whatever plain layers it holds.
"""

from __future__ import annotations

import importlib
import json
import pkgutil

import pytest
import torch
from torch import nn

import modelpress
import modelpress as mp
from modelpress.artifact import load, rebuild, save
from modelpress.artifact.onnx import export_onnx
from modelpress.artifact.packed import PackedModule, export_view
from modelpress.source import attach_source

from ._nested import Box, TwoLinear


def _discover() -> list[type[PackedModule]]:
    for info in pkgutil.walk_packages(modelpress.__path__, "modelpress."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)
    found: set[type] = set()
    stack = [PackedModule]
    while stack:
        for sub in stack.pop().__subclasses__():
            if sub not in found:
                found.add(sub)
                stack.append(sub)
    return sorted((c for c in found if c.__module__.startswith("modelpress.") and not c.__name__.startswith("_")),
                  key=lambda c: f"{c.__module__}.{c.__qualname__}")


# The package's classes, plus a test-only factored layer so that nesting inside a swap with children is
# exercised before the package has such a class.
CLASSES = [*_discover(), TwoLinear]
IDS = [c.__name__ for c in CLASSES]


def test_the_package_has_swapped_modules():
    names = {c.__name__ for c in _discover()}
    assert {"QuantLinear", "QuantConv2d", "QuantEmbedding", "HalfLinear", "HalfConv2d", "HalfEmbedding",
            "FoldedBatchNorm"} <= names


def _example(cls: type[PackedModule]):
    assert cls.example.__func__ is not PackedModule.example.__func__, (
        f"{cls.__module__}:{cls.__name__} must define the classmethod example() -> (instance, inputs) "
        "so that the swap contract test can check it")
    module, inputs = cls.example()
    assert type(module) is cls and isinstance(inputs, tuple)
    return module.eval(), inputs


def _run(module: nn.Module, inputs):
    with torch.no_grad():
        return module(*inputs)


@pytest.mark.parametrize("cls", CLASSES, ids=IDS)
def test_pack_unpack_is_bit_exact(cls):
    module, inputs = _example(cls)
    tensors, meta = module.pack()
    json.dumps(meta)  # the manifest holds it
    own = {k for k in module.state_dict() if "." not in k}
    assert set(tensors) >= set() and all(isinstance(t, torch.Tensor) for t in tensors.values())
    rebuilt = cls.unpack({k: v.clone() for k, v in tensors.items()}, json.loads(json.dumps(meta))).eval()
    children = {k: v for k, v in module.state_dict().items() if k not in own}
    result = rebuilt.load_state_dict(children, strict=False)
    assert not result.unexpected_keys
    assert torch.equal(_run(module, inputs), _run(rebuilt, inputs))


@pytest.mark.parametrize("cls", CLASSES, ids=IDS)
def test_export_form_and_dense_inverse_compute_the_forward(cls):
    module, inputs = _example(cls)
    want = _run(module, inputs)
    deployed = export_view(module)
    assert not any(isinstance(m, PackedModule) for m in deployed.modules()), "export form must be deployable"
    torch.testing.assert_close(_run(deployed.eval(), inputs), want, rtol=1e-5, atol=1e-5)
    dense = module.to_dense()
    assert not isinstance(dense, PackedModule)
    torch.testing.assert_close(_run(dense.eval(), inputs), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cls", CLASSES, ids=IDS)
def test_onnx_export_runs(cls, tmp_path):
    module, inputs = _example(cls)
    path = export_onnx(nn.Sequential(module), inputs, tmp_path / "m.onnx")  # checked in onnxruntime
    assert path.stat().st_size > 0


@pytest.fixture
def allow_box(monkeypatch):
    monkeypatch.setattr(rebuild, "ALLOWED_PACKED_PREFIXES", ("modelpress.", Box.__module__))


def _boxed(children: dict[str, nn.Module], seed: int) -> Box:
    return Box(children, torch.arange(3, dtype=torch.float32) + seed)


def _root(box: Box) -> Box:
    # the root itself is a swap: its source builds a placeholder that the root swap replaces
    return attach_source(box, {"kind": "module", "class": "torch.nn:Identity", "kwargs": {}})


def _same_state(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]), k


def _nest(outer: nn.Module, inner: nn.Module) -> str | None:
    """Put ``inner`` in place of ``outer``'s first child; the child's name, or None for a leaf swap."""
    names = [n for n, _ in outer.named_children()]
    if not names:
        return None
    setattr(outer, names[0], inner)
    return names[0]


@pytest.mark.parametrize("outer", CLASSES, ids=IDS)
@pytest.mark.parametrize("inner", CLASSES, ids=IDS)
def test_nested_pairs_round_trip_after_quantize(outer, inner, tmp_path, allow_box):
    a, a_in = _example(outer)
    b, b_in = _example(inner)
    inner_b, inner_in = _example(inner)
    slot = _nest(a, inner_b)  # `inner` under `outer` where outer holds children
    model = _root(_boxed({"a": a, "b": _boxed({"c": b}, 1)}, 0)).eval()  # both under swaps, two deep
    mp.compress_(model, mp.Quantize(mode="int8-weight"), progress=False)  # then any plain layer is quantized
    checks = {"b.c": b_in, **({"a": a_in} if slot is None else {f"a.{slot}": inner_in})}
    want = {path: _run(model.get_submodule(path), x) for path, x in checks.items()}
    loaded = load(save(model, tmp_path / "a"))
    assert type(loaded) is Box and type(loaded.a) is type(model.a) and type(loaded.b.c) is inner
    _same_state(model, loaded)
    for path, x in checks.items():
        assert torch.equal(_run(loaded.get_submodule(path), x), want[path]), path
