"""read_weights: safetensors and weights-only .pt; pickles that would run code are refused."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from modelpress.artifact.weights import read_weights
from modelpress.errors import BadInputError


class Evil:
    """Unpickling this would create a file: the classic pickle code-execution gadget."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {"fc.weight": torch.randn(3, 4), "fc.bias": torch.zeros(3), "steps": torch.tensor(7)}


def _same(a: dict, b: dict) -> bool:
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_safetensors_and_pt_state_dicts(tmp_path):
    state = _state()
    save_file(state, tmp_path / "w.safetensors")
    assert _same(read_weights(tmp_path / "w.safetensors"), state)
    torch.save(state, tmp_path / "w.pt")
    assert _same(read_weights(tmp_path / "w.pt"), state)
    torch.save({"epoch": 3, "state_dict": state}, tmp_path / "ckpt.pth")  # a wrapped checkpoint
    assert _same(read_weights(tmp_path / "ckpt.pth"), state)


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"w": torch.ones(2), "x": Evil(str(marker))}, tmp_path / "model.pt")
    assert not marker.exists()
    with pytest.raises(BadInputError, match="weights_only=True.*state_dict"):
        read_weights(tmp_path / "model.pt")
    assert not marker.exists()


def test_a_whole_pickled_module_is_refused(tmp_path):
    torch.save(torch.nn.Linear(2, 2), tmp_path / "model.pth")
    with pytest.raises(BadInputError, match="model.pth"):
        read_weights(tmp_path / "model.pth")


def test_non_tensor_content_says_what_was_found(tmp_path):
    torch.save([torch.ones(1)], tmp_path / "list.pt")
    with pytest.raises(BadInputError, match="holds a list"):
        read_weights(tmp_path / "list.pt")
    torch.save({"lr": 0.1, "epoch": 3}, tmp_path / "cfg.pt")
    with pytest.raises(BadInputError, match=r"keys \['epoch', 'lr'\].*float"):
        read_weights(tmp_path / "cfg.pt")


def test_other_files_are_refused(tmp_path):
    with pytest.raises(BadInputError, match="does not exist"):
        read_weights(tmp_path / "none.pt")
    (tmp_path / "model.pkl").write_bytes(b"\x80\x04N.")
    with pytest.raises(BadInputError, match=r"\.safetensors, \.pt or \.pth.*'\.pkl'"):
        read_weights(tmp_path / "model.pkl")
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(BadInputError, match="not a valid safetensors"):
        read_weights(tmp_path / "bad.safetensors")
