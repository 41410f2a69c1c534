"""The command line: help with examples, exit code 2 with one clear message on bad input."""

import json
import pickle
import subprocess
import sys

import pytest
import torch

import modelpress as mp
from modelpress.cli import build_parser, main

SUBCOMMANDS = ["demo", "compress", "evaluate", "sensitivity", "tasks", "recipes"]


def test_every_help_ends_with_examples():
    parser = build_parser()
    assert "examples:" in parser.format_help()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name in SUBCOMMANDS:
        text = sub.choices[name].format_help()
        assert "examples:" in text and f"modelpress {name}" in text.split("examples:")[1]


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "modelpress.cli", "--help"], capture_output=True, text=True, check=False)
    assert out.returncode == 0 and "compress" in out.stdout


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["evaluate", "--task", "no-such-task"], "no-such-task"),
        (["evaluate", "--task", "digits", "--model", "missing.pt"], "does not exist"),
        (["evaluate", "--task", "digits", "--model", "nope.onnx"], "does not exist"),
        (["evaluate", "--task", "digits", "--model", "no-such-model"], "no-such-model"),
        (["evaluate", "--task", "nomodule_xyz:make"], "cannot import"),
        (["compress", "--task", "digits", "--recipe", "no-such-recipe", "--out", "x"], "recipe"),
    ],
)
def test_bad_input_exits_2_without_traceback(argv, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("modelpress: error:") and needle in err
    assert "Traceback" not in err


def test_bad_recipe_file_lists_errors(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("- finetune: {epochs: -1}\n- shrink: {}\n")
    assert main(["compress", "--task", "digits", "--recipe", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "2 error(s)" in err and "line 1" in err and "line 2" in err
    assert not (tmp_path / "o").exists()


class _Evil:
    """Unpickling this would create a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_model_is_refused_and_never_executed(tmp_path, capsys):
    marker = tmp_path / "PWNED"
    evil = tmp_path / "model.pt"
    evil.write_bytes(pickle.dumps(_Evil(str(marker))))
    assert main(["evaluate", "--task", "digits", "--model", str(evil)]) == 2
    assert not marker.exists()
    assert "model.pt" in capsys.readouterr().err


def test_out_folder_with_user_files_is_refused(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.txt").write_text("precious")
    assert main(["compress", "--task", "digits", "--recipe", "finetune", "--out", str(out)]) == 2
    assert (out / "thesis.txt").read_text() == "precious"
    assert sorted(p.name for p in out.iterdir()) == ["thesis.txt"]


def test_sensitivity_writes_table_json_plot_and_html(tmp_path, capsys):
    out = tmp_path / "sens"
    assert main(["sensitivity", "--task", "digits", "--model", "lenet-300-100", "--ratios", "0.5", "0.95",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "fc1" in text and "0.95" in text
    data = json.loads((out / "sensitivity.json").read_text())
    assert data["ratios"] == [0.5, 0.95] and set(data["layers"]) == {"fc1", "fc2", "fc3"}
    # pruning 95% of one layer never beats pruning 50% of it by much (monotone up to noise)
    assert all(v[1] <= v[0] + 0.02 for v in data["layers"].values())
    assert (out / "sensitivity.png").stat().st_size > 1000
    assert "data:image/png;base64" in (out / "sensitivity.html").read_text()


def _tiny_hf_folder(path):
    from transformers import BertConfig, BertModel

    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    BertModel(config).save_pretrained(path)  # safetensors by default
    return path


def test_hf_folder_as_model_is_resolved(tmp_path):
    from modelpress.pipeline.resolve import resolve_model
    from modelpress.tasks.task import Split, Task

    folder = _tiny_hf_folder(tmp_path / "hf")
    ids = torch.randint(0, 30522, (4, 16))
    split = Split((ids, torch.ones_like(ids)), torch.tensor([0, 1, 2, 1]), "test")
    task = mp.tasks.get("digits")
    text_task = Task(**{**task.__dict__, "name": "text", "train": split, "calibration": split, "test": split})
    model = resolve_model(str(folder), text_task)
    assert model(*split.inputs).shape == (4, 3)  # a fresh head sized from the task's classes


def test_hf_folder_on_an_image_task_is_a_clear_error(tmp_path, capsys):
    folder = _tiny_hf_folder(tmp_path / "hf")
    assert main(["evaluate", "--task", "digits", "--model", str(folder), "--runs", "2"]) == 2
    assert "does not run on task `digits`" in capsys.readouterr().err
