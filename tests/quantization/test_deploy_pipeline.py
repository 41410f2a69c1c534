"""The int8-dynamic recipe end to end (issue: it shipped a float graph labelled "dynamic"): the report's
label is the shipped file's, and an integer graph is shipped or the float graph's measured win is stated."""

from __future__ import annotations

import onnx

import modelpress as mp
from modelpress.measure.onnx_graph import onnx_format


def test_int8_dynamic_recipe_ships_integer_matmuls_or_says_why_not(tmp_path):
    task = mp.tasks.get("digits")  # LeNet-300-100 on 8x8 digits: three Linear layers
    result = mp.run(mp.Recipe.resolve("int8-dynamic"), task, out=tmp_path / "out",
                    settings=mp.MeasureSettings(runs=5, warmup=1, runtime="onnxruntime"), progress=False)
    deploy = result.report["deploy"]
    path = tmp_path / "out" / "model.onnx"
    shipped, step = deploy["shipped"], deploy["quantize"]
    assert shipped["format"] == step["format"] == onnx_format(path)
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    if step["candidate"] == "float":
        assert "kept the unchanged form" in step["why"] and "faster" in step["why"] and "MatMulInteger" not in ops
    else:
        assert step["format"] == "int8-dynamic" and ops.count("MatMulInteger") == 3 and "Gemm" not in ops
        assert shipped["bytes"] < 0.35 * next(c["bytes"] for c in step["candidates"] if c["name"] == "float")
    assert step["judged_on"]["split"] == "holdout" and step["judged_on"]["examples"] == 512
    assert abs(result.deployed.metric - result.compressed.metric) <= 0.01  # test split, onnxruntime vs torch
