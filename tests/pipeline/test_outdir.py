"""Output folders: the marker lists what modelpress wrote; only those files, unchanged, are replaced."""

import json
import os

import pytest

from modelpress.errors import BadInputError
from modelpress.pipeline.outdir import MARKER, OutputFolder, check_folder, sha256_file

OUTPUTS = ("model", "report.json", "model.onnx")


def _marker(folder):
    return json.loads((folder / MARKER).read_text())


def _write_run(folder):
    out = OutputFolder.open(folder, OUTPUTS, command="modelpress compress x")
    with out.write("model"):
        (folder / "model").mkdir()
        (folder / "model" / "weights.bin").write_bytes(b"w" * 10)
    with out.write("report.json", "model.onnx"):
        (folder / "report.json").write_text("{}")
        (folder / "model.onnx").write_bytes(b"onnx")
    out.finish()
    return out


def test_a_finished_run_lists_each_file_with_its_hash(tmp_path):
    folder = tmp_path / "o"
    _write_run(folder)
    marker = _marker(folder)
    assert marker["complete"] is True and marker["writing"] == [] and marker["command"] == "modelpress compress x"
    assert set(marker["files"]) == {"model/weights.bin", "report.json", "model.onnx"}
    assert marker["files"]["model.onnx"] == {"sha256": sha256_file(folder / "model.onnx"), "bytes": 4}


def test_unchanged_files_may_be_replaced_and_stale_ones_are_removed(tmp_path):
    folder = tmp_path / "o"
    _write_run(folder)
    assert check_folder(folder, OUTPUTS) is None
    out = OutputFolder.open(folder, OUTPUTS)
    with out.write("report.json"):
        (folder / "report.json").write_text('{"new": 1}')
    out.finish()  # model.onnx and model/ were not written this time: an earlier run's, removed
    assert sorted(p.name for p in folder.iterdir()) == [MARKER, "report.json"]
    assert set(_marker(folder)["files"]) == {"report.json"}


def _swap_for_link(path):
    """Put a symlink to the user's file where modelpress's file was (same bytes, but not ours to write)."""
    mine = path.with_name("users-file")
    mine.write_bytes(path.read_bytes())
    path.unlink()
    os.symlink(mine, path)


@pytest.mark.parametrize("change, needle", [
    (lambda f: (f / "report.json").write_text("edited"), "`report.json`, which was changed since"),
    (lambda f: (f / "model" / "mine.txt").write_text("mine"), "`model/mine.txt`, which was not written"),
    (lambda f: _swap_for_link(f / "model.onnx"), "`model.onnx`, which was changed since"),
])
def test_anything_else_in_the_way_is_refused(tmp_path, change, needle):
    folder = tmp_path / "o"
    _write_run(folder)
    change(folder)
    with pytest.raises(BadInputError, match="refusing to replace") as e:
        check_folder(folder, OUTPUTS)
    assert needle in str(e.value)


def test_files_beside_the_outputs_are_left_alone(tmp_path):
    folder = tmp_path / "o"
    _write_run(folder)
    (folder / "notes.txt").write_text("mine")
    out = OutputFolder.open(folder, OUTPUTS)
    out.finish()
    assert (folder / "notes.txt").read_text() == "mine" and "notes.txt" not in _marker(folder)["files"]


def test_a_folder_without_marker_must_be_empty(tmp_path):
    (tmp_path / "thesis.txt").write_text("x")
    with pytest.raises(BadInputError, match=r"not empty \(thesis.txt\) and was not written by modelpress"):
        check_folder(tmp_path, OUTPUTS)
    assert check_folder(tmp_path / "new" / "deeper", OUTPUTS) is None  # created later, parents too


def test_a_file_as_out_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(BadInputError, match="is a file"):
        check_folder(tmp_path / "f", OUTPUTS)


def test_a_stopped_run_is_marked_incomplete_and_its_half_written_files_are_replaceable(tmp_path):
    folder = tmp_path / "o"
    out = OutputFolder.open(folder, OUTPUTS)
    with pytest.raises(KeyboardInterrupt), out.write("model.onnx"):
        (folder / "model.onnx").write_bytes(b"half")
        raise KeyboardInterrupt
    marker = _marker(folder)
    assert marker["complete"] is False and marker["writing"] == ["model.onnx"]
    note = check_folder(folder, OUTPUTS)  # the half-written file is the stopped run's own
    assert note is not None and "did not finish" in note
    (folder / "report.json").write_text("not ours")  # but nothing it was not writing
    with pytest.raises(BadInputError, match="`report.json`, which was not written"):
        check_folder(folder, OUTPUTS)
    (folder / "report.json").unlink()
    OutputFolder.open(folder, OUTPUTS)  # the next run clears the half-written file before it starts
    assert not (folder / "model.onnx").exists()


def test_a_damaged_marker_is_refused(tmp_path):
    (tmp_path / MARKER).write_text("{not json")
    with pytest.raises(BadInputError, match="cannot be read"):
        check_folder(tmp_path, OUTPUTS)
