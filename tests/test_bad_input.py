"""Bad input on the command line: each case asserts the exit code, the message, and (by SHA-256) that the
user's files are unchanged. Every case here failed before the output-folder marker, the up-front checks
and the one-line errors existed."""

import hashlib
import importlib
import json
import os
import shutil
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import modelpress as mp
from modelpress.cli import main

FAST = ["--runs", "2", "--no-deploy"]


def cli(argv, capsys):
    """(exit code, stdout, stderr) of one in-process call (argparse errors exit via SystemExit)."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def hashes(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` (or of the file itself), by relative path."""
    folder = Path(folder)
    files = [folder] if folder.is_file() else sorted(p for p in folder.rglob("*") if p.is_file())
    return {str(p.relative_to(folder.parent if folder.is_file() else folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in files}


def one_line(err: str) -> bool:
    return err.strip().count("\n") == 0 and "Traceback" not in err


USER_MODULE = '''
import pathlib
import modelpress as mp

CALLED = pathlib.Path({called!r})

def task():
    CALLED.write_text("the task was built, so the data was loaded")
    return mp.tasks.get("digits")

def boom():
    raise ValueError("boom: the data server is down")

def needs(width, depth=2):
    return None

def nan_model():
    net = mp.tasks.models.build("lenet-300-100", input_shape=(1, 8, 8), num_classes=10)
    net.fc2.weight.data[3, 4] = float("nan")
    return net
'''


@pytest.fixture
def user(tmp_path, monkeypatch):
    """A user's module ``um_<id>`` on sys.path; ``user.CALLED`` exists once its ``task()`` ran."""
    name = f"um_{uuid.uuid4().hex[:8]}"
    called = tmp_path / "CALLED"
    (tmp_path / f"{name}.py").write_text(USER_MODULE.format(called=str(called)))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield type("User", (), {"name": name, "CALLED": called})
    sys.modules.pop(name, None)


# --- the user's files are safe -------------------------------------------------------------------------


def _users_folder(path: Path) -> Path:
    """A folder holding the user's own report.json, model.onnx and model/data.bin (no modelpress marker)."""
    (path / "model").mkdir(parents=True)
    (path / "report.json").write_text('{"my": "own report"}')
    (path / "model.onnx").write_bytes(b"my exported model")
    (path / "model" / "data.bin").write_bytes(os.urandom(64))
    return path


def test_a_users_folder_is_refused_before_any_work(tmp_path, capsys, user):
    out = _users_folder(tmp_path / "mine")
    before = hashes(out)
    code, _, err = cli(["compress", "--task", f"{user.name}:task", "--recipe", "finetune", "--out", out], capsys)
    assert code == 2 and one_line(err)
    assert "was not written by modelpress" in err and "model.onnx" in err and "Fix:" in err
    assert hashes(out) == before  # model.onnx was deleted up front before
    assert not user.CALLED.exists()  # refused before the task (and its data) was even built


def test_sensitivity_refuses_a_users_folder_before_the_scan(tmp_path, capsys, user):
    out = _users_folder(tmp_path / "mine")
    (out / "sensitivity.json").write_text("{}")
    before = hashes(out)
    code, _, err = cli(["sensitivity", "--task", f"{user.name}:task", "--out", out], capsys)
    assert code == 2 and one_line(err) and "not written by modelpress" in err
    assert hashes(out) == before and not user.CALLED.exists()


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One real compress run into a fresh folder (digits, one epoch of fine-tuning, no deployment)."""
    out = tmp_path_factory.mktemp("runs") / "done"
    assert main(["compress", "--task", "digits", "--recipe", "finetune", "--out", str(out), *FAST]) == 0
    return out


def test_the_marker_lists_every_file_written_with_its_hash(finished_run):
    marker = json.loads((finished_run / ".modelpress.json").read_text())
    assert marker["complete"] is True and marker["command"].startswith("modelpress compress --task digits")
    written = {k: v for k, v in hashes(finished_run).items() if k != ".modelpress.json"}
    assert {k: v["sha256"] for k, v in marker["files"].items()} == written
    assert {"report.json", "report.html", "model/manifest.json"} <= set(written)


def test_a_file_changed_since_modelpress_wrote_it_is_not_replaced(finished_run, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    (out / "report.json").write_text('{"edited": "by the user"}')
    before = hashes(out)
    code, _, err = cli(["compress", "--task", "digits", "--recipe", "finetune", "--out", out, *FAST], capsys)
    assert code == 2 and one_line(err)
    assert "`report.json`, which was changed since modelpress wrote it" in err
    assert hashes(out) == before


def test_a_users_file_inside_the_artifact_folder_is_refused(finished_run, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    (out / "model" / "data.bin").write_bytes(b"mine")
    before = hashes(out)
    code, _, err = cli(["compress", "--task", "digits", "--recipe", "finetune", "--out", out, *FAST], capsys)
    assert code == 2 and "`model/data.bin`, which was not written by modelpress" in err
    assert hashes(out) == before


def test_a_rerun_replaces_only_its_own_files(finished_run, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    (out / "thesis.txt").write_text("precious")
    old_report = (out / "report.json").read_bytes()
    code, _, _ = cli(["compress", "--task", "digits", "--recipe", "finetune", "--out", out, *FAST], capsys)
    assert code == 0
    assert (out / "thesis.txt").read_text() == "precious"  # not ours: kept, never listed
    assert (out / "report.json").read_bytes() != old_report  # ours and unchanged: replaced
    marker = json.loads((out / ".modelpress.json").read_text())
    assert "thesis.txt" not in marker["files"] and marker["complete"] is True


def test_a_stopped_run_leaves_the_folder_marked_incomplete_and_the_next_run_says_so(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    run_module = importlib.import_module("modelpress.pipeline.run")  # the package exports `run`, the function
    monkeypatch.setattr(run_module, "measure", ctrl_c)  # Ctrl-C while the baseline is measured
    code, _, err = cli(["compress", "--task", "digits", "--recipe", "finetune", "--out", out, *FAST], capsys)
    assert code == 130 and "interrupted" in err
    marker = json.loads((out / ".modelpress.json").read_text())
    assert marker["complete"] is False and marker["finished"] is None
    code, stdout, _ = cli(["compress", "--task", "digits", "--recipe", "finetune", "--out", out, *FAST], capsys)
    assert code == 130 and "holds an earlier run that did not finish" in stdout


def test_an_unwritable_out_is_refused_up_front(tmp_path, capsys, user):
    if os.geteuid() == 0:  # root writes through permission bits; /sys refuses even root
        out = Path("/sys/modelpress-out")
        if not Path("/sys").is_dir():
            pytest.skip("no /sys here to stand for a read-only place")
    else:
        out = tmp_path / "ro"
        out.mkdir()
        out.chmod(0o555)
    code, _, err = cli(["compress", "--task", f"{user.name}:task", "--recipe", "finetune", "--out", out], capsys)
    assert code == 2 and one_line(err) and "not writable" in err and "Fix:" in err
    assert not user.CALLED.exists()  # before any work, not a PermissionError after every step
    assert not out.exists() or not any(out.iterdir())


# --- one clear message -----------------------------------------------------------------------------------


def test_a_task_function_that_raises_is_one_line_with_its_text(capsys, user):
    code, _, err = cli(["evaluate", "--task", f"{user.name}:boom"], capsys)
    assert code == 1 and one_line(err)
    assert f"`--task {user.name}:boom` raised ValueError: boom: the data server is down" in err
    assert "--debug" in err


def test_debug_shows_the_traceback(capsys, user):
    code, _, err = cli(["evaluate", "--debug", "--task", f"{user.name}:boom"], capsys)
    assert code == 1 and "Traceback" in err and "ValueError: boom" in err


def test_a_model_function_that_raises_is_one_line(capsys, user):
    code, _, err = cli(["evaluate", "--task", "digits", "--model", f"{user.name}:boom"], capsys)
    assert code == 1 and one_line(err) and "raised ValueError: boom" in err


def test_a_model_function_that_needs_arguments_is_bad_input(capsys, user):
    code, _, err = cli(["evaluate", "--task", "digits", "--model", f"{user.name}:needs"], capsys)
    assert code == 2 and one_line(err)
    assert "must take no arguments; it needs ['width']" in err and "Fix:" in err


# --- non-finite weights --------------------------------------------------------------------------------


@pytest.mark.parametrize("value, word", [(float("nan"), "1 NaN and 0 Inf"), (float("inf"), "0 NaN and 1 Inf")])
def test_evaluate_refuses_a_weights_file_with_nan_or_inf(tmp_path, capsys, value, word):
    net = mp.tasks.models.build("lenet-300-100", input_shape=(1, 8, 8), num_classes=10)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    state["fc1.weight"][7, 11] = value
    path = tmp_path / "weights.safetensors"
    save_file(state, str(path))
    before = hashes(path)
    code, _, err = cli(["evaluate", "--task", "digits", "--model", path, "--runs", "2"], capsys)
    assert code == 2 and one_line(err)
    assert "fc1.weight" in err and word in err
    assert hashes(path) == before


def test_evaluate_refuses_a_model_function_with_nan(capsys, user):
    code, _, err = cli(["evaluate", "--task", "digits", "--model", f"{user.name}:nan_model", "--runs", "2"], capsys)
    assert code == 2 and one_line(err) and "`fc2.weight`" in err and "1 NaN" in err


def test_a_step_that_makes_the_model_non_finite_is_rolled_back():
    task = mp.tasks.get("digits")
    net = mp.tasks.models.build("lenet-300-100", input_shape=(1, 8, 8), num_classes=10)
    with torch.no_grad():
        net.fc1.weight[0, 0] = 1e6  # finite in float32, +Inf once stored in float16
    recipe = mp.Recipe.from_list([mp.Quantize(mode="fp16")])
    result = mp.run(recipe, task, model=net, settings=mp.MeasureSettings(runs=2, warmup=1), progress=False,
                    deploy=False)
    error = result.steps[0].get("error", "")
    assert error.startswith("rolled back: step `quantize` made the model non-finite") and "Inf" in error
    assert torch.isfinite(result.model.fc1.weight).all() and result.model.fc1.weight.dtype == torch.float32
    assert result.compressed.metric == result.baseline.metric


# --- the smaller ones ------------------------------------------------------------------------------------


def test_flags_are_named_as_flags_before_any_work(capsys, user, tmp_path):
    code, _, err = cli(["compress", "--task", f"{user.name}:task", "--recipe", "finetune", "--out", tmp_path / "o",
                        "--runs", "0"], capsys)
    assert code == 2 and "argument --runs: must be a whole number ≥ 1; got 0" in err and "of `measure`" not in err
    code, _, err = cli(["sensitivity", "--task", f"{user.name}:task", "--ratios", "1.5"], capsys)
    assert code == 2 and "argument --ratios: must be a fraction in [0, 1)" in err and "of `Prune`" not in err
    assert not user.CALLED.exists()


def test_a_bad_recipe_is_reported_before_the_data_loads(tmp_path, capsys, user):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("- finetune: {epochs: 0}\n")
    before = hashes(recipe)
    code, _, err = cli(["compress", "--task", f"{user.name}:task", "--recipe", recipe, "--out", tmp_path / "o"],
                       capsys)
    assert code == 2 and "`epochs` of `FineTune`" in err and "line 1" in err
    assert not user.CALLED.exists() and not (tmp_path / "o").exists()
    assert hashes(recipe) == before


def test_a_key_given_twice_in_a_recipe_is_refused_with_both_lines(tmp_path, capsys, user):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(textwrap.dedent("""\
        - prune: {structure: weight, sparsity: 0.5,
                  sparsity: 0.95}
        - finetune: {epochs: 1}
        """))
    before = hashes(recipe)
    code, _, err = cli(["compress", "--task", f"{user.name}:task", "--recipe", recipe, "--out", tmp_path / "o"],
                       capsys)
    assert code == 2 and "the key `sparsity` is given twice (lines 1 and 2)" in err
    assert not user.CALLED.exists() and hashes(recipe) == before


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    net = mp.tasks.models.build("lenet-300-100", input_shape=(1, 8, 8), num_classes=10)
    return mp.save(net, tmp_path_factory.mktemp("art") / "model")


def test_the_manifest_path_is_accepted_as_model(artifact, capsys):
    before = hashes(artifact)
    code, out, err = cli(["evaluate", "--task", "digits", "--model", artifact / "manifest.json", "--runs", "2"],
                         capsys)
    assert code == 0, err
    macs = next(ln for ln in out.splitlines() if ln.startswith("MACs"))
    assert macs.split()[-1] == "50.2K"  # 64·300 + 300·100 + 100·10 multiply-adds per 8×8 digit
    assert hashes(artifact) == before


def test_evaluate_of_an_onnx_file_says_macs_are_not_counted(artifact, tmp_path, capsys):
    from modelpress.artifact.onnx import export_onnx

    path = tmp_path / "m.onnx"
    export_onnx(mp.load(artifact), mp.tasks.get("digits").example_inputs, path)
    before = hashes(path)
    code, out, _ = cli(["evaluate", "--task", "digits", "--model", path, "--runs", "2"], capsys)
    assert code == 0
    macs = next(ln for ln in out.splitlines() if ln.startswith("MACs"))
    assert "n/a" in macs and not macs.rstrip().endswith(" 0")
    assert hashes(path) == before


def test_recipes_name_an_unknown_recipe(capsys):
    code, _, err = cli(["recipes", "prune-wieght"], capsys)
    assert code == 2 and "Did you mean ['prune-weight'" in err
