"""Selectors pick modules by type and name and combine with & | ~."""

import pytest
from torch import nn

from modelpress.errors import BadInputError
from modelpress.select import by_name, by_type, exclude, from_spec, modules


def _net():
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4, 3), nn.Linear(3, 2))


def test_by_type_and_name_combine():
    net = _net()
    linear = [n for n, _ in modules(net, by_type(nn.Linear))]
    assert linear == ["3", "4"]
    assert [n for n, _ in modules(net, by_type(nn.Linear) & exclude("4"))] == ["3"]
    assert [n for n, _ in modules(net, by_type(nn.Conv2d) | by_name("4"))] == ["0", "4"]
    assert [n for n, _ in modules(net, ~by_type(nn.Linear) & by_name(r"\d"))] == ["0", "1", "2"]


def test_from_spec_matches_python_selectors():
    net = _net()
    sel = from_spec({"types": ["linear", "conv2d"], "exclude": "0"})
    assert [n for n, _ in modules(net, sel)] == ["3", "4"]
    assert from_spec(None) is None


@pytest.mark.parametrize("bad", [{"types": ["lstm"]}, {"unknown": 1}, "linear"])
def test_bad_specs_are_clear_errors(bad):
    with pytest.raises(BadInputError):
        from_spec(bad)


def test_bad_regex_and_type():
    with pytest.raises(BadInputError, match="regular expression"):
        by_name("(")
    with pytest.raises(BadInputError, match="nn.Module subclasses"):
        by_type(int)
