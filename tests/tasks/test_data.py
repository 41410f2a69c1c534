"""The built-in data loaders: split sizes, disjointness, shapes, IDX parsing, the missing-data message."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch

from modelpress.errors import BadInputError
from modelpress.tasks import data
from modelpress.tasks.task import Split


def _rows(split: Split) -> set[bytes]:
    return {r.numpy().tobytes() for r in split.inputs[0]}


@pytest.mark.parametrize(
    ("loader", "sizes", "shape"),
    [(data.digits, (1257, 256, 540), (1, 8, 8)), (data.mnist_5k, (4000, 500, 1000), (1, 28, 28))],
)
def test_split_sizes_and_calibration_is_part_of_train(loader, sizes, shape):
    s = loader()
    assert (len(s.train), len(s.calibration), len(s.test)) == sizes
    assert tuple(s.train.inputs[0].shape[1:]) == shape
    assert s.train.inputs[0].dtype == torch.float32 and s.train.targets.dtype == torch.int64
    train, calib, test = _rows(s.train), _rows(s.calibration), _rows(s.test)
    assert len(train) == sizes[0] and len(test) == sizes[2]  # no duplicate images in these sets
    assert calib <= train
    assert not (train & test)
    # stratified: every class in both splits, proportions within 1 percentage point
    p_tr = torch.bincount(s.train.targets, minlength=10) / len(s.train)
    p_te = torch.bincount(s.test.targets, minlength=10) / len(s.test)
    assert float((p_tr - p_te).abs().max()) < 0.01


def test_loaders_are_seeded_and_cached():
    a, b = data.digits(0), data.digits(0)
    assert a is b  # lru_cache: the second call is free
    other = data.digits.__wrapped__(1)
    assert not torch.equal(a.test.targets, other.test.targets)
    again = data.digits.__wrapped__(0)
    assert torch.equal(a.test.inputs[0], again.test.inputs[0])


def test_value_ranges():
    d = data.digits()
    assert float(d.train.inputs[0].min()) == 0.0 and float(d.train.inputs[0].max()) == 1.0
    m = data.mnist_5k()
    x = m.train.inputs[0]
    assert float(x.min()) == pytest.approx(-0.1307 / 0.3081, abs=1e-5)
    assert float(x.max()) == pytest.approx((1 - 0.1307) / 0.3081, abs=1e-5)


def test_read_idx_planted(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    header = bytes([0, 0, 0x08, 3]) + np.array([2, 3, 4], dtype=">i4").tobytes()
    path = tmp_path / "x-idx3-ubyte.gz"
    with gzip.open(path, "wb") as f:
        f.write(header + arr.tobytes())
    np.testing.assert_array_equal(data._read_idx(path), arr)
    bad = tmp_path / "bad.gz"
    with gzip.open(bad, "wb") as f:
        f.write(bytes([0, 0, 0x0D, 1, 0, 0, 0, 1]) + b"\0\0\0\0")
    with pytest.raises(BadInputError):
        data._read_idx(bad)


def test_fashion_mnist_missing_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "FASHION_MNIST_DIR", tmp_path / "nowhere")
    with pytest.raises(BadInputError, match="apt-get install -y dataset-fashion-mnist"):
        data.fashion_mnist.__wrapped__(0)


@pytest.mark.skipif(not data.FASHION_MNIST_DIR.is_dir(), reason="dataset-fashion-mnist not installed")
def test_fashion_mnist_official_split():
    s = data.fashion_mnist()
    assert (len(s.train), len(s.calibration), len(s.test)) == (60000, 1000, 10000)
    assert tuple(s.test.inputs[0].shape) == (10000, 1, 28, 28)
    assert torch.bincount(s.test.targets).tolist() == [1000] * 10  # the official test set is balanced
    x = s.train.inputs[0]
    assert abs(float(x.mean())) < 0.01 and abs(float(x.std()) - 1) < 0.01
    assert _rows(s.calibration) <= _rows(s.train)


def test_shift_augment_planted():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    s = data.shift_augment(Split((x,), torch.tensor([3])), 1)
    assert len(s) == 9 and s.targets.tolist() == [3] * 9
    assert torch.equal(s.inputs[0][0], x[0])
    # copy 2 is the shift dy=-1, dx=0: the image moves up one row; the freed bottom row gets the minimum (0)
    expected = torch.tensor([[4.0, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15], [0, 0, 0, 0]])
    assert torch.equal(s.inputs[0][2, 0], expected)
    # a one-pixel shift of a 4×4 image keeps its 2×2 centre block in every copy
    for img in s.inputs[0]:
        assert set(img.flatten().tolist()) >= {5.0, 6.0, 9.0, 10.0}
    with pytest.raises(BadInputError):
        data.shift_augment(Split((torch.zeros(2, 3),), torch.zeros(2, dtype=torch.long)))


@pytest.mark.slow
def test_bbc_news_loads_2225_articles_in_5_classes():
    s = data.bbc_news()
    assert s.class_names == ("business", "entertainment", "politics", "sports", "tech")
    assert len(s.train) + len(s.test) == 2225
    assert len(s.test) == 445 and len(s.calibration) == 256
    ids, mask = s.train.inputs
    assert ids.shape == (1780, data.MAX_LENGTH) and ids.dtype == torch.int64 and mask.dtype == torch.int64
    assert int(ids[0, 0]) == data.tokenizer().cls_token_id
    assert bool((mask.sum(1) > 10).all())
    counts = torch.bincount(torch.cat([s.train.targets, s.test.targets])).tolist()
    assert counts == [510, 386, 417, 511, 401]  # the BBC corpus' class sizes
