"""The command line with ExecuTorch: evaluate a .pte, compress --runtime executorch, and a clear exit 2
without it installed."""

from __future__ import annotations

import json

import pytest

from modelpress.cli import main
from modelpress.measure import executorch_runtime as etr

needs_et = pytest.mark.skipif(not etr.executorch_available(), reason="executorch is not installed")


@pytest.mark.parametrize("args", [["evaluate", "--task", "digits", "--runtime", "executorch"],
                                  ["evaluate", "--task", "digits", "--model", "PTE"],
                                  ["compress", "--task", "digits", "--recipe", "int8-static", "--out", "OUT",
                                   "--runtime", "executorch"]])
def test_executorch_absent_is_exit_2(monkeypatch, tmp_path, capsys, args):
    monkeypatch.setattr(etr, "executorch_available", lambda: False)
    pte = tmp_path / "model.pte"  # never read: the missing runtime is found first
    pte.write_bytes(b"")
    args = [str(pte) if a == "PTE" else str(tmp_path / "o") if a == "OUT" else a for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "needs ExecuTorch, which is not installed. Fix: pip install 'modelpress[executorch]'" in err
    assert not (tmp_path / "o").exists()  # nothing was written


def test_missing_pte_is_bad_input(tmp_path, capsys):
    if not etr.executorch_available():
        pytest.skip("executorch is not installed")
    assert main(["evaluate", "--task", "digits", "--model", str(tmp_path / "model.pte")]) == 2
    assert "does not exist" in capsys.readouterr().err


@needs_et
def test_compress_for_a_phone_then_evaluate_the_pte(tmp_path, capsys):
    """int8-static of the digits baseline deployed as a .pte: the report names the runtime, the ops
    XNNPACK took, the fidelity to fp32; evaluating the written file gives the deployed metric again."""
    out = tmp_path / "phone"
    assert main(["compress", "--task", "digits", "--recipe", "int8-static", "--out", str(out),
                 "--runtime", "executorch", "--runs", "3"]) == 0
    printed = capsys.readouterr().out
    assert "ExecuTorch model.pte:" in printed and "ops delegated to XNNPACK, 0 on portable kernels" in printed
    assert "fidelity of the deployed model to the fp32 baseline" in printed
    report = json.loads((out / "report.json").read_text())
    shipped, deployed = report["deploy"]["shipped"], report["deployed"]
    assert shipped["runtime"] == deployed["runtime"] == "executorch"
    assert {c["runtime"] for c in report["deploy"]["quantize"]["candidates"] if "error" not in c} == {"executorch"}
    assert shipped["bytes"] == (out / "model.pte").stat().st_size == deployed["size_bytes"]
    assert shipped["ops"]["portable_ops"] == 0 and shipped["ops"]["delegated"]["aten::linear"] == 3
    assert deployed["fidelity"]["agreement"] >= 0.99  # to the fp32 baseline, on the test split
    assert abs(deployed["metric"] - report["compressed"]["metric"]) <= 0.01
    assert main(["evaluate", "--task", "digits", "--model", str(out / "model.pte"), "--runs", "3",
                 "--json", str(tmp_path / "s.json")]) == 0
    printed = capsys.readouterr().out
    assert "runtime executorch" in printed and "ops: 1 XNNPACK delegate call(s), 0 portable" in printed
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["metric"] == pytest.approx(deployed["metric"], abs=1e-9)  # the same file, the same data


@needs_et
def test_compress_int4_for_a_phone_offers_the_int4_program(tmp_path, capsys):
    """The built-in int4-weight recipe with --runtime executorch: the int4 program is a measured candidate
    beside fp32, and the report says what XNNPACK's 4-bit kernels could not take as modelpress made it."""
    out = tmp_path / "phone4"
    assert main(["compress", "--task", "digits", "--recipe", "int4-weight", "--out", str(out),
                 "--runtime", "executorch", "--runs", "3"]) == 0
    capsys.readouterr()
    report = json.loads((out / "report.json").read_text())
    d = report["deploy"]["quantize"]
    int4 = [c for c in d["candidates"] if c.get("format") == "int4-dynamic"]
    assert int4 and "error" not in int4[0], d["candidates"]
    notes = " ".join(d["executorch_notes"])
    assert "re-quantized symmetric" in notes and "does not divide its 300 inputs" in notes
    assert report["deploy"]["shipped"]["runtime"] == "executorch" and (out / "model.pte").is_file()
