"""Choosing the deployed ONNX format from measured candidates (`quantization.deploy.choose`)."""

import pytest

from modelpress.errors import CompressionError
from modelpress.quantization.deploy import choose


def _row(fmt: str, metric: float, ms: float, size: int) -> dict:
    return {"format": fmt, "metric": metric, "latency_ms": ms, "onnx_bytes": size}


def test_fastest_accurate_candidate_wins():
    rows = [_row("static", 0.90, 1.0, 100), _row("dynamic", 0.95, 1.2, 100), _row("float", 0.95, 2.0, 400)]
    best, why = choose(rows, ref_metric=0.95, tolerance=0.003)
    assert best["format"] == "dynamic" and "within 0.003" in why  # static is faster but 5 points off


def test_latency_ties_go_to_the_smaller_file():
    rows = [_row("static", 0.95, 1.00, 300), _row("static-reduce-range", 0.95, 1.02, 200)]
    assert choose(rows, 0.95, 0.003)[0]["format"] == "static-reduce-range"  # 2% slower: a tie


@pytest.mark.parametrize(("float_ms", "expected"), [(0.95, "static"), (0.85, "float")])
def test_float_graph_must_be_clearly_faster_than_every_quantized_one(float_ms, expected):
    # 5% faster is timing noise on a small model at batch 1; 15% faster is worth the larger file
    rows = [_row("static", 0.95, 1.0, 100), _row("float", 0.95, float_ms, 400)]
    assert choose(rows, 0.95, 0.003)[0]["format"] == expected


def test_no_accurate_candidate_keeps_the_most_accurate_and_all_failed_is_an_error():
    rows = [_row("static", 0.80, 1.0, 100), _row("float", 0.90, 2.0, 400)]
    best, why = choose(rows, 0.95, 0.003)
    assert best["format"] == "float" and "most accurate" in why
    with pytest.raises(CompressionError, match="no deployment candidate"):
        choose([{"format": "static", "error": "boom"}], 0.95, 0.003)
