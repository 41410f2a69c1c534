"""Built-in architectures: planted parameter and MAC counts, shapes, sources, rebuilds, HF folders."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from modelpress.errors import BadInputError
from modelpress.source import get_source
from modelpress.tasks import models
from modelpress.tasks.minilm import MiniLMClassifier, SequenceClassifier, from_hf_folder, mean_pool


def _params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _macs(m: torch.nn.Module, x: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as fc:
        m(x)
    return fc.get_total_flops() // 2


def test_lenet_300_100_planted_counts():
    m = models.build("lenet-300-100")
    # 784·300+300 + 300·100+100 + 100·10+10
    assert _params(m) == 266_610
    assert _macs(m, torch.zeros(1, 1, 28, 28)) == 784 * 300 + 300 * 100 + 100 * 10 == 266_200
    assert _params(models.build("lenet-300-100", input_shape=(1, 8, 8))) == 64 * 300 + 300 + 30_100 + 1_010


def test_mlp_800_800_planted_counts_and_dropout():
    m = models.build("mlp-800-800")
    assert _params(m) == 784 * 800 + 800 + 800 * 800 + 800 + 800 * 10 + 10 == 1_276_810
    assert _macs(m, torch.zeros(1, 1, 28, 28)) == 784 * 800 + 800 * 800 + 800 * 10
    d = models.build("mlp-800-800", dropout=0.5)
    d.load_state_dict(m.state_dict())  # dropout adds no tensors
    x = torch.randn(4, 1, 28, 28)
    assert torch.equal(d.eval()(x), m.eval()(x))  # and does nothing in eval mode
    assert not torch.equal(d.train()(x), m.train()(x))
    wide = models.build("mlp-1200-1200")
    assert _params(wide) == 784 * 1200 + 1200 + 1200 * 1200 + 1200 + 1200 * 10 + 10 == 2_395_210


def test_lenet_5_planted_counts_and_small_input_error():
    m = models.build("lenet-5")
    assert _params(m) == 431_080  # Deep Compression's Caffe LeNet-5
    assert m(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    with pytest.raises(BadInputError, match="16×16"):
        models.build("lenet-5", input_shape=(1, 8, 8))


def test_resnet_s_shapes_and_batchnorm():
    m = models.build("resnet-s", num_classes=7)
    assert m(torch.zeros(2, 1, 28, 28)).shape == (2, 7)
    assert any(isinstance(x, torch.nn.BatchNorm2d) for x in m.modules())
    assert _params(m) == 696_042 - 3 * (128 + 1)  # the documented 10-class count, 3 fewer fc rows
    # works on 8×8 digits too (global average pooling)
    assert models.build("resnet-s", input_shape=(1, 8, 8))(torch.zeros(1, 1, 8, 8)).shape == (1, 10)


@pytest.mark.parametrize("name", ["lenet-300-100", "mlp-800-800", "mlp-1200-1200", "lenet-5", "resnet-s"])
def test_source_records_all_kwargs_and_rebuilds(name):
    m = models.build(name, num_classes=4)
    src = get_source(m)
    assert src["kind"] == "builtin" and src["name"] == name
    assert src["kwargs"]["num_classes"] == 4 and src["kwargs"]["input_shape"] == [1, 28, 28]
    again = models.rebuild(src)
    assert {k: v.shape for k, v in again.state_dict().items()} == {
        k: v.shape for k, v in m.state_dict().items()
    }
    again.load_state_dict(m.state_dict())
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(again.eval()(x), m.eval()(x))


def test_bad_names_and_kwargs():
    with pytest.raises(BadInputError, match="lenet-300-100"):
        models.build("vgg-16")
    with pytest.raises(BadInputError):
        models.build("lenet-5", bogus=1)
    with pytest.raises(BadInputError):
        models.build("resnet-s", num_classes=1)
    with pytest.raises(BadInputError):
        models.rebuild({"kind": "pickle"})
    assert set(models.MODEL_NAMES) == {"lenet-300-100", "mlp-800-800", "mlp-1200-1200", "lenet-5", "resnet-s", "minilm-l6"}
    with pytest.raises(BadInputError, match="dropout"):
        models.build("mlp-800-800", dropout=1.0)
    with pytest.raises(BadInputError, match="mlp-1200-1200"):
        models.build("mlp-1200-1200", num_classes=1)


def test_mean_pool_ignores_padding():
    h = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert torch.equal(mean_pool(h, mask), torch.tensor([[2.0, 3.0]]))


@pytest.fixture(scope="module")
def tiny_bert_folders(tmp_path_factory):
    from transformers import BertConfig, BertForSequenceClassification, BertModel

    cfg = BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
        num_labels=3,
    )
    root = tmp_path_factory.mktemp("hf")
    torch.manual_seed(0)
    BertModel(cfg).save_pretrained(root / "bare")
    BertForSequenceClassification(cfg).save_pretrained(root / "cls")
    return root


def test_from_hf_folder_sequence_classifier(tiny_bert_folders):
    m = from_hf_folder(tiny_bert_folders / "cls")
    assert isinstance(m, SequenceClassifier)
    ids, mask = torch.randint(0, 50, (2, 8)), torch.ones(2, 8, dtype=torch.long)
    out = m.eval()(ids, mask)
    assert out.shape == (2, 3)
    src = get_source(m)
    assert src["kind"] == "hf" and src["wrapper"] == "sequence-classification" and src["num_classes"] == 3
    again = models.rebuild(src)
    again.load_state_dict(m.state_dict())
    assert torch.allclose(again.eval()(ids, mask), out)
    with pytest.raises(BadInputError, match="num_labels"):
        from_hf_folder(tiny_bert_folders / "cls", num_classes=5)


def test_from_hf_folder_bare_encoder_gets_fresh_head(tiny_bert_folders):
    with pytest.raises(BadInputError, match="num_classes"):
        from_hf_folder(tiny_bert_folders / "bare")
    m = from_hf_folder(tiny_bert_folders / "bare", num_classes=4)
    assert isinstance(m, MiniLMClassifier) and m.head.out_features == 4
    ids, mask = torch.randint(0, 50, (2, 8)), torch.ones(2, 8, dtype=torch.long)
    assert m.eval()(ids, mask).shape == (2, 4) and m.embed(ids, mask).shape == (2, 16)
    again = models.rebuild(get_source(m))
    again.load_state_dict(m.state_dict())
    assert torch.allclose(again.eval()(ids, mask), m(ids, mask))


def test_from_hf_folder_rejects_non_hf_folder(tmp_path):
    with pytest.raises(BadInputError, match="config.json"):
        from_hf_folder(tmp_path)


@pytest.mark.slow
def test_minilm_from_config_matches_pretrained_architecture():
    m = models.build("minilm-l6", num_classes=5, pretrained=False)
    assert isinstance(m, MiniLMClassifier)
    assert _params(m) == 22_713_216 + 384 * 5 + 5  # all-MiniLM-L6-v2 + the head
    assert get_source(m) == {
        "kind": "builtin",
        "name": "minilm-l6",
        "kwargs": {"num_classes": 5, "pretrained": False},
    }
