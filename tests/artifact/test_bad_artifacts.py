"""Bad and hostile artifacts: nothing named by a manifest runs, every refusal is one clear line.

Each case asserts the message and that the command a gadget carries did not run (no MARKER file in the
working directory).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import struct
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file
from torch import nn

from modelpress.artifact import load, save
from modelpress.artifact.weights import read_weights
from modelpress.errors import BadInputError, ModelpressError
from modelpress.source import attach_source
from modelpress.tasks.models import build

MARKER = "MARKER"


def _one_line(e: pytest.ExceptionInfo) -> str:
    text = str(e.value)
    assert "\n" not in text and text
    return text


@pytest.fixture
def lenet_folder(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)  # a gadget's `touch MARKER` would land here
    torch.manual_seed(0)
    return save(build("lenet-300-100"), tmp_path / "a")


def _rewrite(folder: Path, change) -> None:
    man = json.loads((folder / "manifest.json").read_text())
    change(man)
    (folder / "manifest.json").write_text(json.dumps(man))


def _set_source(folder: Path, source: dict) -> None:
    _rewrite(folder, lambda man: man.__setitem__("source", source))


YAML_GADGET = {"kind": "callable", "ref": "yaml:unsafe_load",
               "kwargs": {"stream": f"!!python/object/apply:os.system ['touch {MARKER}']"}}
CALLABLES = {
    "os:system": {"command": f"touch {MARKER}"},
    "builtins:exec": {"source": f"open('{MARKER}', 'w')"},
    "subprocess:run": {"args": ["touch", MARKER]},
    "importlib:import_module": {"name": "antigravity"},
    "pickle:loads": {"data": "cos\nsystem\n(S'touch MARKER'\ntR."},
}


def test_yaml_gadget_does_not_run(lenet_folder):
    _set_source(lenet_folder, YAML_GADGET)
    with pytest.raises(BadInputError) as e:
        load(lenet_folder)
    text = _one_line(e)
    assert "'yaml:unsafe_load'" in text and "trust_source=True" in text and "--trust-source" in text
    assert not Path(MARKER).exists()


@pytest.mark.parametrize("ref", sorted(CALLABLES))
def test_stdlib_callables_do_not_run(lenet_folder, ref):
    _set_source(lenet_folder, {"kind": "callable", "ref": ref, "kwargs": CALLABLES[ref]})
    with pytest.raises(BadInputError) as e:
        load(lenet_folder)
    assert f"the function {ref!r}" in _one_line(e) and "--trust-source" in str(e.value)
    with pytest.raises(BadInputError) as e:
        load(lenet_folder, trust_source=True)  # even when trusted: no model factory lives in the stdlib
    assert "refusing to call it" in _one_line(e)
    assert not Path(MARKER).exists()


@pytest.mark.parametrize("cls", ["os:system", "subprocess:Popen", "torch:load", "torch.nn.modules:Module",
                                 "modelpress.errors:BadInputError"])
def test_module_source_builds_only_module_classes(lenet_folder, cls):
    _set_source(lenet_folder, {"kind": "module", "class": cls, "kwargs": {"args": ["touch", MARKER]}})
    with pytest.raises(BadInputError) as e:
        load(lenet_folder)
    assert cls in _one_line(e)
    assert not Path(MARKER).exists()


def test_module_source_builds_a_torch_class(tmp_path):
    model = attach_source(nn.Linear(4, 3), {"kind": "module", "class": "torch.nn:Linear",
                                            "kwargs": {"in_features": 4, "out_features": 3}})
    loaded = load(save(model, tmp_path / "a"))
    assert torch.equal(loaded.weight, model.weight)


def test_tensor_file_outside_the_artifact(lenet_folder):
    def escape(man):
        man["files"] = {f"../{name}": info for name, info in man["files"].items()}
    _rewrite(lenet_folder, escape)
    with pytest.raises(BadInputError) as e:
        load(lenet_folder)
    assert "outside the artifact: '../weights.safetensors'" in _one_line(e)


def _oversized_header() -> bytes:
    return struct.pack("<Q", 1 << 40) + b'{"a": {}}' + bytes(64)  # claims a 1 TiB JSON header


def test_oversized_safetensors_header_in_an_artifact(lenet_folder):
    blob = _oversized_header()
    (lenet_folder / "weights.safetensors").write_bytes(blob)
    _rewrite(lenet_folder, lambda man: man["files"]["weights.safetensors"].update(
        sha256=hashlib.sha256(blob).hexdigest(), bytes=len(blob)))  # a consistent forgery
    with pytest.raises(BadInputError) as e:
        load(lenet_folder)
    assert "is not a valid safetensors file" in _one_line(e)


def test_oversized_safetensors_header_as_a_weights_file(tmp_path):
    (tmp_path / "w.safetensors").write_bytes(_oversized_header())
    with pytest.raises(BadInputError) as e:
        read_weights(tmp_path / "w.safetensors")
    assert "is not a valid safetensors file" in _one_line(e)


def test_nan_weights_are_refused_at_load(tmp_path):
    model = build("lenet-300-100")
    with torch.no_grad():
        model.fc2.weight[3, :7] = float("nan")
        model.fc3.bias[0] = float("inf")
    folder = save(model, tmp_path / "a")
    with pytest.raises(BadInputError) as e:
        load(folder)
    assert "tensor `fc2.weight`" in _one_line(e) and "holds 7 non-finite values (NaN or Inf) of 30000" in str(e.value)
    assert "1 more tensors" in str(e.value)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_nan_and_inf_weights_files_are_refused(tmp_path, suffix):
    state = build("lenet-300-100").state_dict()
    state["fc1.bias"][:2] = torch.tensor([float("nan"), float("-inf")])
    path = tmp_path / f"w{suffix}"
    if suffix == ".pt":
        torch.save(state, path)
    else:
        save_file(state, str(path))
    with pytest.raises(BadInputError) as e:
        read_weights(path)
    assert "tensor `fc1.bias`" in _one_line(e) and "holds 2 non-finite values" in str(e.value)


def test_wrong_shape_names_the_tensor_and_both_shapes(lenet_folder):
    def fewer_classes(man):
        man["source"]["kwargs"]["num_classes"] = 5
    _rewrite(lenet_folder, fewer_classes)
    with pytest.raises(BadInputError) as e:
        load(lenet_folder)
    assert ("tensor `fc3.weight` in the artifact" in _one_line(e)
            and "has shape [10, 100], but the model (LeNet300100) expects [5, 100]" in str(e.value))


# ---- a fuzz of the manifest reader ---------------------------------------------------------------------

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 40) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8)


def _paths(obj, prefix=()):
    yield prefix
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for key, value in items:
        yield from _paths(value, (*prefix, key))


@pytest.fixture(scope="module")
def small_artifact(tmp_path_factory) -> Path:
    from modelpress.quantization.modules import QuantLinear, WeightSpec

    torch.manual_seed(0)
    model = build("lenet-300-100")  # a source, shapes, tensors and one swap for the fuzz to damage
    model.fc3 = QuantLinear.from_float(model.fc3, WeightSpec(bits=4, granularity="group", group_size=50, symmetric=False))
    return save(model, tmp_path_factory.mktemp("fuzz") / "a")


@given(data=st.data())
@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "150")), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_fuzzed_manifest_raises_only_modelpress_errors(small_artifact, data):
    man = json.loads((small_artifact / "manifest.json").read_text())
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(list(_paths(man))))
        value = data.draw(_JSON)
        if not path:
            man = value
            continue
        parent = man
        for key in path[:-1]:
            parent = parent[key]
        if data.draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = copy.deepcopy(value)
        if not isinstance(man, (dict, list)):
            break
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "a"
        shutil.copytree(small_artifact, folder)
        (folder / "manifest.json").write_text(json.dumps(man))
        try:
            load(folder)
        except ModelpressError:
            pass
