"""The command line: help with examples, exit code 2 with one clear message on bad input."""

import json
import pickle
import subprocess
import sys
from pathlib import Path

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


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"modelpress {mp.__version__}"


def test_debug_is_accepted_before_and_after_the_subcommand():
    parser = build_parser()
    assert parser.parse_args(["--debug", "tasks"]).debug is True
    assert parser.parse_args(["tasks", "--debug"]).debug is True
    assert parser.parse_args(["tasks"]).debug is False


def test_recipes_lists_whole_descriptions_and_prints_one_as_yaml(capsys):
    from modelpress.pipeline import builtin_recipes

    assert main(["recipes"]) == 0
    listing = " ".join(capsys.readouterr().out.split())  # undo the wrapping
    for path in builtin_recipes().values():
        words = " ".join(ln.lstrip("#").strip() for ln in path.read_text().splitlines() if ln.startswith("#"))
        assert " ".join(words.split()) in listing  # every sentence, not the first comment line
    assert main(["recipes", "prune-int8"]) == 0
    assert capsys.readouterr().out == builtin_recipes()["prune-int8"].read_text()


def test_tasks_loads_no_data_and_its_sizes_are_the_loaders(monkeypatch, capsys):
    import dataclasses

    from modelpress.tasks import builtin, data

    def no_loading():
        raise AssertionError("`modelpress tasks` must not load data")

    specs = dict(builtin._SPECS)
    monkeypatch.setattr(builtin, "_SPECS", {k: dataclasses.replace(v, loader=no_loading) for k, v in specs.items()})
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in specs)
    for name, loader in (("digits", data.digits), ("mnist-5k", data.mnist_5k)):  # the two fast ones
        s = loader()
        assert specs[name].sizes == (len(s.train), len(s.calibration), len(s.test), s.num_classes)


def _report(tmp_path):
    """A report as `run` builds it, with a long deploy table and stages that sit on top of each other."""
    from modelpress.measure.stats import Stats
    from modelpress.pipeline import Recipe
    from modelpress.pipeline.report import about_run, build_report

    task = mp.tasks.get("digits")
    net = mp.tasks.models.build("lenet-300-100", input_shape=(1, 8, 8), num_classes=10)
    base = Stats(204095, 50610, 50610, 50200, 0.03, 0.04, 200000, 0.963)
    same = Stats(20325, 50610, 4426, 50200, 0.03, 0.04, 200000, 0.9315)
    steps = [{"name": n, "config": {}, "skipped": [], "details": {"layers": ["x" * 400] * 5}, "stats": same.to_dict()}
             for n in ("prune", "finetune", "quantize")]
    interleaved = {"threads": 1, "batch_size": 1, "median_ms": {}, "steps_ratio_vs_baseline": [0.8, 0.8, 0.8],
                   "ratio_vs_baseline": {"baseline": 1.0, "compressed": 0.8, "deployed": 0.5}}
    deploy = {"quantize": {"candidates": [{"format": "static-" + "y" * 300, "why": "z" * 500}] * 4}}
    recipe = Recipe.resolve("prune-int8")
    report = build_report(task, recipe, base, steps, same, same, deploy, interleaved)
    return report | about_run(net, "lenet-300-100", "modelpress compress --task digits " + "--x " * 80, 0)


def test_report_records_model_command_seed_created_versions_machine(tmp_path):
    report = _report(tmp_path)
    assert report["model"]["name"] == "lenet-300-100" and report["model"]["source"]["kind"] == "builtin"
    assert report["seed"] == 0 and report["created"].endswith("+00:00")
    assert {"python", "modelpress", "torch", "onnxruntime", "onnx", "numpy"} <= set(report["versions"])
    assert report["versions"]["torch"] == torch.__version__
    machine = report["machine"]
    cpuinfo = Path("/proc/cpuinfo").read_text() if sys.platform == "linux" else ""
    assert machine["logical_cpus"] >= 1 and machine["torch_threads"] == torch.get_num_threads()
    if " avx2" in cpuinfo:
        assert "avx2" in machine["cpu_flags"]
    assert "sse2" not in machine["cpu_flags"]  # kernel-relevant flags only, not all of them


def test_report_html_folds_raw_json_and_fits_the_window(tmp_path):
    import re
    import shutil as sh

    from modelpress.pipeline.report import render_html

    report = _report(tmp_path)
    report["steps"][2]["error"] = "rolled back: step `quantize` made the model non-finite: ..."
    page = render_html(report)
    outside = re.sub(r"<details>.*?</details>", "", page, flags=re.DOTALL)
    assert "<pre>" not in outside  # every raw JSON dump is folded away
    assert "step 3, quantize: rolled back: step `quantize` made the model non-finite" in outside
    browser = sh.which("chromium") or sh.which("chromium-browser") or sh.which("google-chrome")
    if browser is None:
        pytest.skip("no headless Chromium here to measure the page width")
    # open every <details>, then write the page's scroll width into its title (read back with --dump-dom)
    probe = page.replace("<details>", "<details open>").replace(
        "</body>", "<script>document.title='W'+document.documentElement.scrollWidth+'/'"
        "+document.documentElement.clientWidth</script></body>")
    (tmp_path / "r.html").write_text(probe)
    out = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                          "--disable-component-update", "--disable-sync", "--no-first-run",
                          f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,2000", "--dump-dom",
                          (tmp_path / "r.html").as_uri()], capture_output=True, text=True, timeout=120, check=False)
    found = re.search(r"<title>W(\d+)/(\d+)</title>", out.stdout)
    assert found, out.stderr[-500:]
    assert int(found.group(1)) <= int(found.group(2))  # no horizontal scrollbar at 1280 px
