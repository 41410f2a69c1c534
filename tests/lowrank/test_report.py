"""A final model's report: every layer the lowrank step replaced was timed faster than its dense form."""

import json

import modelpress as mp
from modelpress.artifact.packed import PackedModule


def test_report_lists_no_layer_slower_than_dense(tmp_path):
    task = mp.tasks.get("digits")
    recipe = mp.Recipe.from_yaml("- lowrank: {ratio: 0.25, runs: 20}\n- finetune: {epochs: 1, lr: 0.0005}\n")
    res = mp.run(recipe, task, model=task.model("lenet-300-100"), out=tmp_path / "out", progress=False,
                 settings=mp.MeasureSettings(batch_size=32), deploy=False)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    rows = [r for step in report["steps"] for r in step.get("details", {}).get("layers", [])
            if isinstance(r, dict) and "decision" in r]
    assert {r["module"] for r in rows} == {"fc1", "fc2", "fc3"}  # every selected layer was judged
    kept = [r for r in rows if r["decision"] == "kept"]
    slower = [r for r in kept if not r["new_ms"] < r["dense_ms"]]
    assert slower == []
    assert all(r["dense_ms"] > 0 and r["new_ms"] > 0 for r in rows)  # each one was timed
    replaced = {n for n, m in res.model.named_modules() if isinstance(m, PackedModule)}
    assert replaced == {r["module"] for r in kept}  # rolled-back layers are dense in the final model
    assert report["steps"][0]["details"]["timed_in"] == {"runtime": "onnxruntime", "batch_size": 32, "threads": 1}
