"""The candidate chooser (`modelpress.measure.choose`), fidelity, the held-out judging split, and graph labels.

Latencies are planted with ``time.sleep`` (milliseconds apart, far above timing noise) and fidelities with
known perturbations, so each test knows the right winner before it runs.
"""

from __future__ import annotations

import math
import time

import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from modelpress.errors import BadInputError
from modelpress.measure.choose import Candidate, Floor, choose, holdout_split
from modelpress.measure.fidelity import fidelity
from modelpress.measure.onnx_graph import layer_formats, onnx_format

torch.manual_seed(0)
X = torch.randn(200, 16)
REF = torch.randn(200, 10) * 3  # the reference model's logits on X


def _predict(ms: float, noise: float = 0.0, flip: int = 0):
    """A stand-in candidate taking ``ms`` per call whose outputs are the reference plus ``noise`` (std),
    with the argmax of the first ``flip`` rows moved to another class."""
    g = torch.Generator().manual_seed(1)
    out = REF + noise * torch.randn(REF.shape, generator=g)
    for i in range(flip):
        out[i, (REF[i].argmax() + 1) % 10] = REF[i].max() + 10
    def predict(inputs):
        time.sleep(ms / 1000)
        return out[: len(inputs[0])]
    return predict


def test_fidelity_of_planted_noise_and_flips():
    noise = torch.full_like(REF, 0.1)
    f = fidelity(REF + noise, REF)
    assert f.sqnr_db == pytest.approx(10 * math.log10(float((REF**2).sum()) / float((noise**2).sum())), rel=1e-6)
    assert f.max_abs_diff == pytest.approx(0.1, abs=1e-6) and f.agreement == 1.0
    assert fidelity(_predict(0, flip=10)((X,)), REF).agreement == pytest.approx(190 / 200)
    exact = fidelity(REF, REF)
    assert exact.sqnr_db == math.inf and exact.to_dict()["sqnr_db"] is None and exact.cosine == pytest.approx(1.0)
    with pytest.raises(BadInputError, match="`outputs` of `fidelity` must have the reference's shape"):
        fidelity(REF[:, :5], REF)


def test_fastest_faithful_wins_the_unfaithful_and_the_slow_baseline_lose():
    cands = [Candidate("float", _predict(6.0), 400, baseline=True),
             Candidate("int8", _predict(2.0, noise=0.01), 100),
             Candidate("int4", _predict(0.5, flip=20), 50)]  # fastest, but 10% of the answers change
    choice = choose(cands, (X,), REF, floor=Floor(agreement=0.99), runs=5, warmup=1)
    assert choice.winner.name == "int8"
    rows = {r.name: r for r in choice.table}
    assert [r.name for r in choice.table] == ["float", "int8", "int4"]
    assert rows["int4"].fidelity.agreement == pytest.approx(0.9) and not rows["int4"].accepted
    assert rows["int8"].latency_ms >= 2.0 and rows["float"].latency_ms >= 6.0  # sleeps: lower bounds
    assert "int4 (" in choice.why and "below the floor" in choice.why and "slower" in choice.why
    assert choice.to_dict()["candidates"][1]["fidelity"]["agreement"] == 1.0


def test_baseline_kept_when_clearly_faster_and_errors_are_rows():
    def broken(inputs):
        raise RuntimeError("no kernel for this op")

    cands = [Candidate("dense", _predict(1.0), 400, baseline=True),
             Candidate("factored", _predict(8.0, noise=0.01), 100),
             Candidate("broken", broken, 10)]
    choice = choose(cands, (X,), REF, floor=Floor(sqnr_db=20.0), runs=7, warmup=1)
    assert choice.winner.name == "dense" and "kept the unchanged form" in choice.why, choice.why
    assert choice.table[2].error == "RuntimeError: no kernel for this op"


def test_holdout_is_training_data_outside_calibration_and_never_test():
    from modelpress import tasks

    task = tasks.get("digits")
    split = holdout_split(task, 300, seed=0)
    assert len(split) == 300 and split.name == "holdout"

    def rows(s):
        return {bytes(t.numpy().tobytes()) for t in s.inputs[0]}

    assert not rows(split) & rows(task.calibration)
    assert rows(split) <= rows(task.train) and not rows(split) & rows(task.test)
    assert torch.equal(holdout_split(task, 300, seed=0).inputs[0], split.inputs[0])  # seeded
    # digits: 1257 train, 256 of them calibration -> at most 1001 held out
    assert len(holdout_split(task, 5000)) == len(task.train) - len(task.calibration)


def _graph(nodes, inits, inputs=("x",)):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(i, TensorProto.FLOAT, [1, 4]) for i in inputs],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], inits)
    return helper.make_model(g)


def test_onnx_format_reads_the_graph_not_a_name():
    w = numpy_helper.from_array(torch.randn(4, 4).numpy(), "w")
    assert onnx_format(_graph([helper.make_node("Gemm", ["x", "w"], ["y"], transB=1)], [w])) == "float32"
    w16 = numpy_helper.from_array(torch.randn(4, 4).numpy().astype("float16"), "w16")
    half = [helper.make_node("Cast", ["w16"], ["w"], to=TensorProto.FLOAT), helper.make_node("MatMul", ["x", "w"], ["y"])]
    assert onnx_format(_graph(half, [w16])) == "fp16"
    nbits = helper.make_node("MatMulNBits", ["x", "b", "s"], ["y"], domain="com.microsoft", K=4, N=4, bits=4,
                             block_size=16)
    assert onnx_format(_graph([nbits], [])) == "int4-weight"
    # activation x activation (attention scores) is not a weighted layer; with a float layer beside it
    attn = [helper.make_node("MatMul", ["x", "k"], ["a"]), helper.make_node("Gemm", ["a", "w"], ["y"], transB=1)]
    assert [lf.kind for lf in layer_formats(_graph(attn, [w], inputs=("x", "k")))] == ["float32"]
    dq = [helper.make_node("DynamicQuantizeLinear", ["x"], ["q", "qs", "qz"]),
          helper.make_node("MatMulInteger", ["q", "w8", "qz"], ["y"])]
    w8 = numpy_helper.from_array(torch.randint(-127, 127, (4, 4), dtype=torch.int8).numpy(), "w8")
    model = _graph([*dq, helper.make_node("MatMul", ["x", "w"], ["z"])], [w8, w])
    assert onnx_format(model) == "int8-dynamic+float32"
    assert onnx_format(_graph([helper.make_node("Relu", ["x"], ["y"])], [])) == "none"
