"""Comparison of planted Stats: ratios, delta, tables, JSON."""

from __future__ import annotations

import json
import math

import pytest

from modelpress.errors import BadInputError
from modelpress.measure import Stats, compare, format_stats
from modelpress.measure.compare import human_bytes, human_count

A = Stats(size_bytes=1_070_000, params=266_610, nonzero_params=266_610, macs=266_200, latency_ms=0.2,
          latency_p90_ms=0.25, peak_mem_bytes=1_100_000, metric=0.9836)  # fmt: skip
B = Stats(size_bytes=26_750, params=266_610, nonzero_params=21_329, macs=266_200, latency_ms=0.1,
          latency_p90_ms=0.2, peak_mem_bytes=550_000, metric=0.9842)  # fmt: skip


def test_ratios_are_b_over_a():
    c = compare(A, B)
    assert c.ratios["size_bytes"] == pytest.approx(1 / 40)
    assert c.ratios["params"] == 1.0
    assert c.ratios["nonzero_params"] == pytest.approx(21_329 / 266_610)
    assert c.ratios["macs"] == 1.0
    assert c.ratios["latency_ms"] == pytest.approx(0.5)
    assert c.ratios["latency_p90_ms"] == pytest.approx(0.8)
    assert c.ratios["peak_mem_bytes"] == pytest.approx(0.5)
    assert c.metric_delta == pytest.approx(0.0006)


def test_table_shows_human_units_and_ratios():
    text = compare(A, B, metric_name="accuracy").table()
    lines = text.splitlines()
    size = next(ln for ln in lines if ln.startswith("size"))
    assert "1.02 MB" in size and "26.12 KB" in size and "0.025×" in size
    assert any(ln.startswith("latency median") and "0.500×" in ln for ln in lines)
    assert any(ln.startswith("accuracy") and "+0.0006" in ln for ln in lines)
    # aligned: every row of the table has its ratio column ending at the same place
    table_rows = lines[1:9]
    assert len({len(ln) for ln in table_rows}) == 1


def test_markdown_has_a_row_per_figure():
    md = compare(A, B).markdown()
    rows = [ln for ln in md.splitlines() if ln.startswith("| ") and "---" not in ln]
    assert len(rows) == 1 + 8  # header + 7 ratios + metric
    assert "| size | 1.02 MB | 26.12 KB | 0.025× |" in md


def test_to_dict_is_json_and_zero_references_are_handled():
    zero = Stats(0, 0, 0, 0, 0.0, 0.0, 0, 0.5)
    c = compare(zero, B)
    d = json.loads(json.dumps(c.to_dict()))
    assert d["ratios"]["size_bytes"] is None  # b / 0
    assert d["a"]["size_bytes"] == 0 and d["b"]["nonzero_params"] == 21_329
    assert compare(zero, zero).ratios["macs"] == 1.0
    assert math.isinf(c.ratios["macs"])
    assert "n/a" in c.table()


def test_bad_arguments():
    with pytest.raises(BadInputError):
        compare(A, {"size_bytes": 1})
    with pytest.raises(BadInputError):
        format_stats("x")


def test_format_stats():
    text = format_stats(A, metric_name="accuracy")
    assert "size" in text and "1.02 MB" in text and "266.6K" in text and "0.9836" in text


@pytest.mark.parametrize(("n", "text"), [(512, "512 B"), (1536, "1.50 KB"), (3 * 1024**2, "3.00 MB")])
def test_human_bytes(n, text):
    assert human_bytes(n) == text


def test_human_count():
    assert human_count(266_200) == "266.2K" and human_count(22_700_000) == "22.7M" and human_count(42) == "42"
